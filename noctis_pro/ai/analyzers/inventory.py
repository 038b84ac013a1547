"""Study inventory: per series the instance count, modality, instance-number gaps and duplicates; and whether the
index's derived counts agree with the instances it holds."""

from __future__ import annotations

from collections import defaultdict

from noctis_pro.ai import selectors  # a module reference: selectors imports analyzers.base
from noctis_pro.ai.analyzers.base import AnalysisContext, AnalyzerOutput, SeriesFacts
from noctis_pro.pacs.selectors import study_inventory_rows


def _gaps(numbers: list[int]) -> list[int]:
    """Instance numbers missing between the smallest and the largest present (capped at 1000 listed)."""
    present = set(numbers)
    if not present:
        return []
    missing = (n for n in range(min(present), max(present) + 1) if n not in present)
    return [n for _, n in zip(range(1000), missing, strict=False)]


class StudyInventory:
    """Per series: instance count, modality, instance-number gaps and duplicates; checks the derived counts."""

    name = "study_inventory"
    scope = "study"

    def applies_to(self, facts: SeriesFacts) -> bool:
        return True

    def run(self, context: AnalysisContext) -> AnalyzerOutput:
        series_rows, instance_rows = study_inventory_rows(study_id=context.study_id, series_id=context.series_id)
        numbers: dict[int, list[int]] = defaultdict(list)
        unnumbered: dict[int, int] = defaultdict(int)
        counts: dict[int, int] = defaultdict(int)
        for series_id, instance_number in instance_rows:
            counts[series_id] += 1
            if instance_number is None:
                unnumbered[series_id] += 1
            else:
                numbers[series_id].append(instance_number)
        series_out = []
        for s in series_rows:
            nums = sorted(numbers[s["id"]])
            duplicates = sorted({n for i, n in enumerate(nums) if i and nums[i - 1] == n})
            series_out.append(
                {
                    "series_instance_uid": s["series_instance_uid"],
                    "series_number": s["series_number"],
                    "modality": s["modality"],
                    "series_description": s["series_description"],
                    "instances": counts[s["id"]],
                    "instance_number_range": [nums[0], nums[-1]] if nums else None,
                    "instance_number_gaps": _gaps(nums),
                    "duplicate_instance_numbers": duplicates,
                    "instances_without_number": unnumbered[s["id"]],
                    "count_matches_index": counts[s["id"]] == s["number_of_instances"],
                }
            )
        number_of_series, number_of_instances = selectors.study_counts(study_id=context.study_id)
        total = sum(counts.values())
        result = {
            "study_instance_uid": context.study_instance_uid,
            "series_count": len(series_out),
            "instance_count": total,
            "modalities": sorted({s["modality"] for s in series_out if s["modality"]}),
            "series": series_out,
            "complete": all(not s["instance_number_gaps"] for s in series_out),
            "study_counts_match_index": context.series_id is not None
            or (number_of_series == len(series_out) and number_of_instances == total),
        }
        return AnalyzerOutput(result=result)
