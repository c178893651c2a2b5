"""Inputs written for the tests: a news page with boilerplate, a PDF made from our own text, a
PDF without a text layer, a JSONL archive with a malformed line, an RSS feed."""

from __future__ import annotations

import json

PAGE_TEXT = [
    "The harbour authority of Gdynia took delivery of a new container crane on Tuesday, its director said.",
    "The crane, built in Rostock, can lift 65 tonnes and will serve the Baltic Hub terminal from the autumn.",
    "Port officials expect throughput to rise by a fifth once the second crane arrives next month.",
]


def news_page(title: str = "Gdynia harbour gets a new crane", date: str = "2025-03-04",
              author: str = "Anna Nowak", site: str = "Baltic Times", url: str = "https://baltic.example/crane") -> str:
    paragraphs = "\n".join(f"<p>{p}</p>" for p in PAGE_TEXT)
    return f"""<!DOCTYPE html>
<html lang="en"><head>
<meta charset="utf-8"><title>{title} | {site}</title>
<meta property="og:title" content="{title}">
<meta property="og:site_name" content="{site}">
<meta property="og:url" content="{url}">
<meta name="author" content="{author}">
<meta property="article:published_time" content="{date}T08:30:00Z">
<link rel="canonical" href="{url}">
</head><body>
<nav><ul><li><a href="/">Home</a></li><li><a href="/sport">Sport</a></li>
<li><a href="/weather">Weather</a></li></ul></nav>
<div class="ad">ADVERTISEMENT: Buy cheap flights to Malta today, limited offer!</div>
<article>
<h1>{title}</h1>
<p class="byline">By {author}, {date}</p>
{paragraphs}
</article>
<section class="comments"><h3>Comments</h3><p>Great news for the region, says reader Zbigniew 77.</p></section>
<footer>Copyright Baltic Times. All rights reserved. Privacy policy. Cookie settings.</footer>
</body></html>"""


def _pdf_string(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def make_pdf(lines: list[str] | None, title: str = "Rail report", author: str = "Jan Kowal",
             created: str = "20250409120000Z") -> bytes:
    """A one-page PDF; ``lines`` None makes a page with no text layer (as a scan has)."""
    if lines is None:
        content = b"0.5 g 50 50 200 200 re f"  # a grey square: marks on the page, no text
    else:
        ops = ["BT", "/F1 11 Tf", "14 TL", "50 780 Td"] + [f"({_pdf_string(x)}) Tj T*" for x in lines] + ["ET"]
        content = "\n".join(ops).encode("latin-1")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 5 0 R >> >> "
        b"/Contents 4 0 R >>",
        b"<< /Length " + str(len(content)).encode() + b" >>\nstream\n" + content + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        f"<< /Title ({_pdf_string(title)}) /Author ({_pdf_string(author)}) /CreationDate (D:{created}) >>".encode(),
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{i} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R /Info 6 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


PDF_LINES = [
    "Rail report: the Poznan tram line reopened on 9 April 2025 after two years of works.",
    "The city spent 410 million zloty on the new tracks and six stations.",
]

RECORDS = [
    {"id": "kyiv-1", "title": "Kyiv metro extends hours", "date": "2025-05-20", "source": "Kyiv Post",
     "url": "https://kyiv.example/metro", "author": "O. Shevchenko",
     "text": "The Kyiv metro will run until 1 a.m. from 1 June, the city council decided on Tuesday."},
    {"id": "lviv-2", "title": "Lviv opens a book fair", "date": "2025-09-12", "source": "Lviv Herald",
     "text": "The Lviv book fair opened on Friday with 300 publishers from 20 countries."},
]


def jsonl_archive(with_bad_line: bool = True) -> bytes:
    lines = [json.dumps(RECORDS[0])]
    if with_bad_line:
        lines.append('{"id": "broken", "text": "no closing brace"')
    lines.append(json.dumps(RECORDS[1]))
    lines.append(json.dumps({"id": "no-text", "title": "An item without text"}))
    return ("\n".join(lines) + "\n").encode("utf-8")


def rss_feed(links: list[str], title: str = "Baltic Times feed") -> bytes:
    items = "".join(f"<item><title>Item {i}</title><link>{u}</link><pubDate>Tue, 04 Mar 2025 08:30:00 GMT</pubDate>"
                    f"</item>" for i, u in enumerate(links))
    return (f'<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>{title}</title>'
            f"<link>https://baltic.example/</link><description>news</description>{items}</channel></rss>").encode()
