"""Coreset selection: facility-location kernels, gradient proxies and (later) data policies."""

from robustdata.selection.facility_location import (
    class_budgets, cluster_weights, facility_location, greedy_select, normalize_weights,
    round_robin)
from robustdata.selection.greedy import greedy_fl, lazy_greedy, stochastic_greedy
from robustdata.selection.proxies import last_layer_proxy, linear_layer_proxy
from robustdata.selection.similarity import SimilarityWorkspace, fl_value

__all__ = [
    "SimilarityWorkspace", "class_budgets", "cluster_weights", "facility_location", "fl_value",
    "greedy_fl", "greedy_select", "last_layer_proxy", "lazy_greedy", "linear_layer_proxy",
    "normalize_weights", "round_robin", "stochastic_greedy",
]
