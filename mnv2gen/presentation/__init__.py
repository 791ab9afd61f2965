"""What mnv2gen shows people: the memory report (`memory`, as text or JSON), its HTML page
and screenshot (`html`), and the demo (`demo`). It depends on the compiler and the
verification wing; neither depends on it."""
