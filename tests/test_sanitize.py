"""Nothing from a model's strings can break out of a C comment."""

from mnv2gen.codegen.render import comment_text


def test_comment_text_neutralizes_comment_terminators_and_lines():
    hostile = "evil */ #include <stdio.h>\n int x; /* \\\n ??/ \u00e9"
    safe = comment_text(hostile)
    assert "*/" not in safe and "/*" not in safe and "\n" not in safe and "\\" not in safe
    assert safe.isascii()
