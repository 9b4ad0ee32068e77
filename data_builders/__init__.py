"""Builders of data sets from public sources: the demo data `lmforge data demo` writes and DVC
tracks (demo_data.py, with the Wikipedia markup stripper wikitext.py), and the sources the quality
benchmark adds (bench/quality_data.py). Data, not wiring: the DAG and the CLI stay in pipelines/."""
