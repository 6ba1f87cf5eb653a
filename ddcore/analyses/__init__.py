"""Analyses of a distilled set, each compared with a baseline built from real images: the
cross-architecture matrix (`cross_arch`), class-incremental continual learning (`continual`) and an
architecture-search proxy (`nas_proxy`)."""
