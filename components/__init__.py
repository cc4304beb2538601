"""Pipeline components, one package each (declaration, Beam or TensorFlow work, page); shared I/O in `io`; heavy libraries are imported only when a component runs."""
