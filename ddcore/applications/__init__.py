"""Applications of distilled data: class-incremental continual learning (`continual`) and an
architecture-search proxy (`nas_proxy`), each compared with a baseline built from real images."""
