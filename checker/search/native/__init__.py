"""The native core: the Program's expression trees compiled to C at run time.

``cgen`` writes the C (successor function, predicates, race tables),
``runtime`` holds the fixed C (store, BFS loop, Python glue), ``build``
compiles and caches it, ``driver`` picks the core and runs the native BFS.
"""
