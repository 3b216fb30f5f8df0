"""The site's build machinery: the MkDocs hook that injects formulas,
tables, kernels and figures derived from the cells, and KaTeX typesetting at
build time (see ``mkdocs.yml`` and :mod:`derive.site.hook`).

Importing this package needs MkDocs only for :mod:`derive.site.hook`;
:mod:`derive.site.directives` and :mod:`derive.site.katex` need neither
MkDocs nor a network.
"""
