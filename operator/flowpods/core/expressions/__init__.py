"""Kestra's expression language (Pebble, as Kestra extends it), rendered with jinja2.

Modules: `syntax` (Pebble's grammar into jinja2's), `printing` (how values print), `operators`, `filters`,
`functions`, `dates` (Java date patterns), `limits` (what one rendering may cost), `environment`.
"""
