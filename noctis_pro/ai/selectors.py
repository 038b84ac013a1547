"""Read queries of AI analyses for the UI."""

from django.db.models import QuerySet

from noctis_pro.ai.models import AIAnalysis


def analyses_for_study(*, study_id: int, limit: int = 20) -> QuerySet[AIAnalysis]:
    return AIAnalysis.objects.filter(study_id=study_id).order_by("-created_at", "-pk")[:limit]
