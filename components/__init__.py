"""Pipeline components, one module each; heavy libraries are imported only when a component runs."""
