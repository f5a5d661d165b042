"""Misconception classification: a student's multiple-choice answer and explanation -> ranked
`Category:Misconception` labels, metric MAP@3."""
