"""The fast paths of finance_pipeline/columnar: each one gives exactly what the plain code it
accelerates gives (property tests on random values, and on files tampered with)."""
