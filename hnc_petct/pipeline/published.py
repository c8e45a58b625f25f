"""Published reference points shown beside our numbers (sources: HECKTOR challenge overviews).

Only figures we can cite go here; the seed papers' per-ablation tables are not in our sources,
so the report does not pretend to compare against them.
"""

from __future__ import annotations

RFS_REFERENCE = [
    {"source": "HECKTOR 2025 Task 2, best test C-index", "value": 0.66},
    {"source": "HECKTOR 2022 Task 2, best test C-index", "value": 0.682},
    {"source": "HECKTOR 2021 Task 2, best test C-index", "value": 0.72},
]
SEG_REFERENCE = [
    {"source": "HECKTOR, best mean DSC (typical range, low)", "value": 0.75},
    {"source": "HECKTOR, best mean DSC (typical range, high)", "value": 0.79},
]
