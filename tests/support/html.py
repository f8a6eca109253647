"""HTML compared as a mail client's parser sees it."""

from __future__ import annotations

from urllib.parse import quote

import lxml.html


def canonical(html: str) -> list[tuple[object, ...]]:
    """A document as parsed, so both sides are compared as a mail client's HTML parser would see them.

    Entity spelling (`&#39;` versus `'`) and quoting differ between Jinja's escaper and lxml's serializer
    and vanish in parsing. One difference survives parsing: lxml percent-encodes href/src values when it
    serializes (a space becomes %20, é becomes %C3%A9), and only the per-email path serializes rendered
    URLs. A client's URL parser applies that same encoding before following a link, so URLs are compared
    after encoding the characters libxml2 encodes; the encoding is idempotent on already-encoded values.
    """
    tree = lxml.html.document_fromstring(html.encode("utf-8"), parser=lxml.html.HTMLParser(encoding="utf-8"))
    nodes: list[tuple[object, ...]] = [("doctype", tree.getroottree().docinfo.doctype)]
    for element in tree.iter():
        attributes = dict(element.attrib)
        for name in ("href", "src"):
            if name in attributes:
                attributes[name] = quote(attributes[name], safe="@/:=?;#%&,+-_.!~*'()")
        nodes.append((str(element.tag), sorted(attributes.items()), element.text, element.tail))
    return nodes
