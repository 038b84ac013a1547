"""Signals pacs sends so feature apps can react without pacs importing them.

`studies_indexed(study_ids=set[int], series_ids=set[int])` (the series this batch added to) is sent inside
receipts_index's transaction: receivers' writes commit or roll back with the index.
"""

from django.dispatch import Signal

studies_indexed = Signal()
