"""Pipelines (above the model families, below the jobs): the recommend pipeline, retrieve -> second stage ->
decision rule, that `/recommend` and `edurank evaluate recommend` both run, and its evaluation."""
