"""NoctisPro's API edge: REST under /api/v1 and the /ws event relay, reading the tables Django owns."""
