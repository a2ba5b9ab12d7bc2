"""Tests of consentfetch.consent.metadata: IPTC Data Mining in XMP, C2PA training-mining.

Every image is generated here with Pillow (XMP segments and chunks written by
hand where Pillow cannot); C2PA images are signed offline with a throwaway
CA made by ``cryptography``. Nothing touches the network.
"""

from __future__ import annotations

import datetime
import io
import json
import struct
import sys
import time
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from PIL import Image, PngImagePlugin

from consentfetch.consent import metadata
from consentfetch.consent.metadata import (
    MAX_PACKETS,
    NO_SIGNAL,
    MetadataVerdict,
    c2pa_training_from_manifest_store,
    check_embedded,
    data_mining_from_xmp,
    extract_xmp_packets,
    read_c2pa_training,
    read_iptc_data_mining,
)

PLUS = "http://ns.useplus.org/ldf/xmp/1.0/"
VOCAB = "http://ns.useplus.org/ldf/vocab/"
RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"

PROHIBITIONS = [
    "DMI-PROHIBITED",
    "DMI-PROHIBITED-AIMLTRAINING",
    "DMI-PROHIBITED-GENAIMLTRAINING",
    "DMI-PROHIBITED-EXCEPTSEARCHENGINEINDEXING",
    "DMI-PROHIBITED-SEECONSTRAINT",
    "DMI-PROHIBITED-SEEEMBEDDEDRIGHTSEXPR",
    "DMI-PROHIBITED-SEELINKEDRIGHTSEXPR",
]
DENIED, ALLOWED, NOTHING = "denied", "allowed", "nothing"
EXPECTED = {code: DENIED for code in PROHIBITIONS} | {
    "DMI-ALLOWED": ALLOWED, "DMI-UNSPECIFIED": NOTHING}


# --- building XMP packets -------------------------------------------------------

def packet(description: str, *, xmlns: str = f'xmlns:plus="{PLUS}"', wrapper: bool = True) -> bytes:
    """An XMP packet whose one rdf:Description has these attributes/children.

    ``description`` is the inside of ``<rdf:Description ...`` up to and
    including its end: ``' plus:DataMining="..."/>'`` or ``'><x/></rdf:Description>'``.
    """
    body = (f'<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="consentfetch tests">'
            f'<rdf:RDF xmlns:rdf="{RDF}">'
            f'<rdf:Description rdf:about="" {xmlns}{description}'
            f'</rdf:RDF></x:xmpmeta>')
    if wrapper:
        body = ('<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n' + body
                + "\n" + " " * 200 + '\n<?xpacket end="w"?>')
    return body.encode("utf-8")


def as_attribute(value: str, prefix: str = "plus") -> str:
    return f' {prefix}:DataMining="{value}"/>'


def as_element(value: str, prefix: str = "plus") -> str:
    return f'><{prefix}:DataMining>{value}</{prefix}:DataMining></rdf:Description>'


def as_resource(value: str, prefix: str = "plus") -> str:
    return f'><{prefix}:DataMining rdf:resource="{value}"/></rdf:Description>'


FORMS = {"attribute": as_attribute, "element": as_element, "resource": as_resource}


def dmi(value: str, form: str = "attribute", **kwargs: Any) -> bytes:
    return packet(FORMS[form](value), **kwargs)


NO_DATA_MINING = packet(' xmlns:dc="http://purl.org/dc/elements/1.1/">'
                        '<dc:creator><rdf:Seq><rdf:li>Someone</rdf:li></rdf:Seq></dc:creator>'
                        '</rdf:Description>', xmlns="")


# --- building images --------------------------------------------------------------

def _pixels(size: tuple[int, int] = (64, 48)) -> Image.Image:
    return Image.linear_gradient("L").resize(size).convert("RGB")


def jpeg(*packets: bytes, size: tuple[int, int] = (64, 48), quality: int = 85) -> bytes:
    """A JPEG with one APP1 XMP segment per packet, right after APP0."""
    buf = io.BytesIO()
    _pixels(size).save(buf, "JPEG", quality=quality)
    data = buf.getvalue()
    app0_end = 4 + int.from_bytes(data[4:6], "big")
    segments = b"".join(app1(b"http://ns.adobe.com/xap/1.0/\x00" + p) for p in packets)
    return data[:app0_end] + segments + data[app0_end:]


def app1(payload: bytes) -> bytes:
    return b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def xmp_text_chunk(xmp: bytes, kind: str = "iTXt") -> bytes:
    key = b"XML:com.adobe.xmp\x00"
    if kind == "iTXt":
        return png_chunk(b"iTXt", key + b"\x00\x00" + b"\x00\x00" + xmp)
    if kind == "iTXt-z":
        return png_chunk(b"iTXt", key + b"\x01\x00" + b"\x00\x00" + zlib.compress(xmp))
    if kind == "zTXt":
        return png_chunk(b"zTXt", key + b"\x00" + zlib.compress(xmp))
    return png_chunk(b"tEXt", key + xmp)


def png(*packets: bytes, where: str = "before", kind: str = "iTXt") -> bytes:
    """A PNG with an XMP text chunk per packet, before IDAT or after it."""
    buf = io.BytesIO()
    _pixels().save(buf, "PNG")
    data = buf.getvalue()
    chunks = b"".join(xmp_text_chunk(p, kind) for p in packets)
    at = 8 + 25 if where == "before" else data.rindex(b"IEND") - 4  # after IHDR / before IEND
    return data[:at] + chunks + data[at:]


def webp(xmp: bytes | None = None) -> bytes:
    buf = io.BytesIO()
    _pixels().save(buf, "WEBP", **({"xmp": xmp} if xmp is not None else {}))
    return buf.getvalue()


def tiff(xmp: bytes) -> bytes:
    buf = io.BytesIO()
    _pixels().save(buf, "TIFF", tiffinfo={700: xmp})
    return buf.getvalue()


def gif(xmp: bytes) -> bytes:
    """A GIF carrying XMP the Adobe way: an "XMP DataXMP" application extension."""
    buf = io.BytesIO()
    _pixels().convert("P").save(buf, "GIF")
    data = buf.getvalue()
    magic = bytes([1]) + bytes(range(255, -1, -1)) + b"\x00"
    return data[:-1] + b"!\xff\x0bXMP DataXMP" + xmp + magic + data[-1:]


def kind(verdict: MetadataVerdict) -> str:
    assert not (verdict.denied and verdict.allowed)
    assert (verdict.evidence is not None) == (verdict.denied or verdict.allowed)
    return DENIED if verdict.denied else ALLOWED if verdict.allowed else NOTHING


# --- IPTC: every value in every form -----------------------------------------------

@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("code", EXPECTED)
def test_every_dmi_value_in_every_form(code: str, form: str) -> None:
    value = VOCAB + code
    verdict = check_embedded(jpeg(dmi(value, form)), "image/jpeg", use_c2pa=False)
    assert kind(verdict) == EXPECTED[code]
    if verdict.evidence is not None:
        assert verdict.evidence == f"XMP plus:DataMining = {value}"


@pytest.mark.parametrize("code", EXPECTED)
def test_bare_codes_are_accepted(code: str) -> None:
    assert kind(data_mining_from_xmp(dmi(code))) == EXPECTED[code]


@pytest.mark.parametrize(("value", "expected"), [
    (f"  {VOCAB}DMI-PROHIBITED-AIMLTRAINING \n", DENIED),  # whitespace around
    ("https://ns.useplus.org/ldf/vocab/DMI-PROHIBITED", DENIED),
    ("HTTP://NS.USEPLUS.ORG/LDF/VOCAB/dmi-prohibited", DENIED),
    (f"{VOCAB}DMI-PROHIBITED/", DENIED),
    (f"{VOCAB}DMI-PROHIBITED-SOMETHINGNEW", DENIED),  # any DMI-PROHIBITED*
    ("dmi-allowed", ALLOWED),
    ("http://example.com/vocab/DMI-PROHIBITED", NOTHING),  # not the PLUS vocabulary
    (f"{VOCAB}SOMETHING-ELSE", NOTHING),
    ("prohibited", NOTHING),
    ("", NOTHING),
])
def test_value_reading(value: str, expected: str) -> None:
    assert kind(data_mining_from_xmp(dmi(value, "element"))) == expected


# --- IPTC: namespaces -----------------------------------------------------------------

@pytest.mark.parametrize("form", FORMS)
def test_any_prefix_bound_to_the_namespace(form: str) -> None:
    xmp = packet(FORMS[form](VOCAB + "DMI-PROHIBITED", prefix="dm"), xmlns=f'xmlns:dm="{PLUS}"')
    verdict = data_mining_from_xmp(xmp)
    assert kind(verdict) == DENIED
    assert verdict.evidence == f"XMP plus:DataMining = {VOCAB}DMI-PROHIBITED"


def test_default_namespace_on_the_element() -> None:
    xmp = packet(f'><DataMining xmlns="{PLUS}">{VOCAB}DMI-PROHIBITED</DataMining></rdf:Description>',
                 xmlns="")
    assert kind(data_mining_from_xmp(xmp)) == DENIED


@pytest.mark.parametrize("form", FORMS)
def test_right_name_wrong_namespace(form: str) -> None:
    xmp = packet(FORMS[form](VOCAB + "DMI-PROHIBITED"), xmlns='xmlns:plus="http://example.com/plus/"')
    assert data_mining_from_xmp(xmp) == NO_SIGNAL


def test_other_namespace_version_is_not_plus() -> None:
    xmp = dmi(VOCAB + "DMI-PROHIBITED", xmlns='xmlns:plus="http://ns.useplus.org/ldf/xmp/2.0/"')
    assert data_mining_from_xmp(xmp) == NO_SIGNAL


def test_unprefixed_attribute_is_in_no_namespace() -> None:
    # Unprefixed attributes never take the default namespace (XML Namespaces §6.2).
    xmp = packet(f' xmlns="{PLUS}" DataMining="{VOCAB}DMI-PROHIBITED"/>', xmlns="")
    assert data_mining_from_xmp(xmp) == NO_SIGNAL


def test_unbound_prefix_is_malformed() -> None:
    assert data_mining_from_xmp(dmi(VOCAB + "DMI-PROHIBITED", xmlns="")) == NO_SIGNAL


def test_qualified_value_form() -> None:
    xmp = packet(f'><plus:DataMining rdf:parseType="Resource"><rdf:value>{VOCAB}DMI-PROHIBITED'
                 '</rdf:value></plus:DataMining></rdf:Description>')
    assert kind(data_mining_from_xmp(xmp)) == DENIED


def test_without_xpacket_wrapper_and_without_xmpmeta() -> None:
    bare = (f'<rdf:RDF xmlns:rdf="{RDF}"><rdf:Description xmlns:plus="{PLUS}" '
            f'plus:DataMining="{VOCAB}DMI-PROHIBITED"/></rdf:RDF>')
    assert kind(data_mining_from_xmp(bare.encode())) == DENIED
    assert kind(data_mining_from_xmp(dmi(VOCAB + "DMI-PROHIBITED", wrapper=False))) == DENIED


# --- IPTC: several values, several packets ------------------------------------------------

def test_most_restrictive_value_in_one_packet() -> None:
    xmp = packet(f' plus:DataMining="{VOCAB}DMI-ALLOWED"><plus:DataMining>{VOCAB}DMI-PROHIBITED'
                 '</plus:DataMining></rdf:Description>')
    verdict = data_mining_from_xmp(xmp)
    assert kind(verdict) == DENIED
    assert verdict.evidence is not None and verdict.evidence.endswith("DMI-PROHIBITED")


@pytest.mark.parametrize("order", [1, -1])
def test_most_restrictive_packet_wins(order: int) -> None:
    packets = [dmi(VOCAB + "DMI-ALLOWED"), dmi(VOCAB + "DMI-PROHIBITED-GENAIMLTRAINING", "element")]
    body = jpeg(*packets[::order])
    assert len(extract_xmp_packets(body)) == 2
    verdict = read_iptc_data_mining(body)
    assert kind(verdict) == DENIED
    assert verdict.evidence == f"XMP plus:DataMining = {VOCAB}DMI-PROHIBITED-GENAIMLTRAINING"


def test_allowed_and_unspecified_is_allowed() -> None:
    body = jpeg(dmi(VOCAB + "DMI-UNSPECIFIED"), NO_DATA_MINING, dmi(VOCAB + "DMI-ALLOWED", "resource"))
    assert kind(read_iptc_data_mining(body)) == ALLOWED


def test_a_bad_packet_does_not_hide_a_good_one() -> None:
    body = jpeg(b"<x:xmpmeta><unclosed", dmi(VOCAB + "DMI-PROHIBITED"))
    assert kind(read_iptc_data_mining(body)) == DENIED


def test_packets_kept_are_bounded() -> None:
    body = jpeg(*[NO_DATA_MINING] * (MAX_PACKETS + 4), dmi("DMI-PROHIBITED"))
    assert len(extract_xmp_packets(body)) == MAX_PACKETS


# --- IPTC: refused and malformed packets --------------------------------------------------

BILLION_LAUGHS = (
    b'<?xml version="1.0"?>\n<!DOCTYPE lolz [\n <!ENTITY lol "lol">\n'
    + b"".join(b' <!ENTITY lol%d "%s">\n' % (i, b"&lol%d;" % (i - 1) * 10 if i > 1 else b"&lol;" * 10)
               for i in range(1, 10))
    + b"]>\n" + dmi("&lol9;" + VOCAB + "DMI-PROHIBITED", "element", wrapper=False)
)
XXE = (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
       + dmi("&xxe;DMI-PROHIBITED", "element", wrapper=False))
PARAMETER_ENTITY = (b'<!DOCTYPE x [<!ENTITY % ext SYSTEM "http://127.0.0.1:9/x.dtd"> %ext;]>'
                    + dmi("DMI-PROHIBITED", "element", wrapper=False))


@pytest.mark.parametrize("xmp", [BILLION_LAUGHS, XXE, PARAMETER_ENTITY], ids=["laughs", "xxe", "param"])
def test_dtd_packets_are_refused_fast(xmp: bytes) -> None:
    start = time.perf_counter()
    assert data_mining_from_xmp(xmp) == NO_SIGNAL
    assert check_embedded(jpeg(xmp), "image/jpeg", use_c2pa=False) == NO_SIGNAL
    assert time.perf_counter() - start < 0.5


def test_dtd_refused_even_without_entities() -> None:
    xmp = b"<!DOCTYPE x:xmpmeta>" + dmi(VOCAB + "DMI-PROHIBITED", wrapper=False)
    assert data_mining_from_xmp(xmp) == NO_SIGNAL


def test_dtd_refused_in_utf16() -> None:
    # The byte search cannot see "<!DOCTYPE" in UTF-16: expat's handler refuses it.
    xmp = BILLION_LAUGHS.decode().replace('<?xml version="1.0"?>', '<?xml version="1.0" encoding="UTF-16"?>')
    start = time.perf_counter()
    assert data_mining_from_xmp(xmp.encode("utf-16")) == NO_SIGNAL
    assert time.perf_counter() - start < 0.5


def test_utf16_packet_is_read() -> None:
    xmp = dmi(VOCAB + "DMI-PROHIBITED", wrapper=False).decode().encode("utf-16")
    assert kind(data_mining_from_xmp(xmp)) == DENIED


@pytest.mark.parametrize("xmp", [
    dmi(VOCAB + "DMI-PROHIBITED").partition(b"</rdf:RDF>")[0],  # truncated
    dmi(VOCAB + "DMI-PROHIBITED").replace(b"</rdf:RDF>", b""),  # unclosed
    dmi(VOCAB + "DMI-PROHIBITED", "element") + b"<junk/>",  # two roots
    b'<!ENTITY x "y">' + dmi(VOCAB + "DMI-PROHIBITED", wrapper=False),  # entity outside a DTD
    b"\xff\xfe\x00garbage DataMining",
    b"DataMining",
], ids=["truncated", "unclosed", "two-roots", "entity", "binary", "text"])
def test_malformed_packets_give_no_signal(xmp: bytes) -> None:
    assert data_mining_from_xmp(xmp) == NO_SIGNAL


def test_oversized_packet_is_not_parsed() -> None:
    xmp = packet(as_attribute(VOCAB + "DMI-PROHIBITED")[:-2] + ">" + "<!-- pad -->" * 100_000
                 + "</rdf:Description>")
    assert len(xmp) > metadata.MAX_PACKET_BYTES
    assert data_mining_from_xmp(xmp) == NO_SIGNAL


def test_str_and_nul_padded_packets() -> None:
    xmp = dmi(VOCAB + "DMI-PROHIBITED")
    assert kind(data_mining_from_xmp(xmp.decode())) == DENIED
    assert kind(data_mining_from_xmp(xmp + b"\x00" * 16)) == DENIED


# --- finding packets in containers ---------------------------------------------------------

DENY = dmi(VOCAB + "DMI-PROHIBITED-AIMLTRAINING")


@pytest.mark.parametrize("make", [
    lambda: jpeg(DENY),
    lambda: png(DENY),
    lambda: png(DENY, where="after"),
    lambda: png(DENY, kind="iTXt-z"),
    lambda: png(DENY, kind="zTXt", where="after"),
    lambda: png(DENY, kind="tEXt"),
    lambda: webp(DENY),
    lambda: tiff(DENY),
    lambda: gif(DENY),
    lambda: gif(DENY.replace(b"<?xpacket", b"<?nope")),  # x:xmpmeta without wrapper
], ids=["jpeg", "png", "png-after-idat", "png-itxt-z", "png-ztxt", "png-text", "webp", "tiff",
        "gif", "gif-no-wrapper"])
def test_packet_found_in_every_container(make: Callable[[], bytes]) -> None:
    body = make()
    packets = extract_xmp_packets(body)
    assert len(packets) == 1 and b"DMI-PROHIBITED-AIMLTRAINING" in packets[0]
    verdict = check_embedded(body, None, use_c2pa=False)
    assert verdict.evidence == f"XMP plus:DataMining = {VOCAB}DMI-PROHIBITED-AIMLTRAINING"


@pytest.mark.parametrize("make", [
    lambda: _saved("JPEG", xmp=DENY),
    lambda: png(DENY),
    lambda: png(DENY, kind="iTXt-z"),
    lambda: webp(DENY),
    lambda: tiff(DENY),
], ids=["jpeg", "png", "png-z", "webp", "tiff"])
def test_same_packet_as_pillow(make: Callable[[], bytes]) -> None:
    body = make()
    with Image.open(io.BytesIO(body)) as im:
        assert extract_xmp_packets(body) == [im.info["xmp"]]


def _saved(fmt: str, **options: Any) -> bytes:
    buf = io.BytesIO()
    _pixels().save(buf, fmt, **options)
    return buf.getvalue()


def test_png_written_by_pillow_pnginfo() -> None:
    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", DENY.decode(), zip=True)
    assert kind(read_iptc_data_mining(_saved("PNG", pnginfo=info))) == DENIED


def test_png_packets_before_and_after_idat() -> None:
    allowed = dmi(VOCAB + "DMI-ALLOWED")
    body = png(allowed)
    body = body[:body.rindex(b"IEND") - 4] + xmp_text_chunk(DENY) + body[body.rindex(b"IEND") - 4:]
    assert len(extract_xmp_packets(body)) == 2
    assert kind(read_iptc_data_mining(body)) == DENIED


def test_png_other_text_chunks_ignored() -> None:
    body = png()
    body = body[:33] + png_chunk(b"tEXt", b"Comment\x00" + DENY) + body[33:]
    assert extract_xmp_packets(body) == []


def test_jpeg_extended_xmp_is_reassembled() -> None:
    main = packet(' xmlns:xmpNote="http://ns.adobe.com/xmp/note/" '
                  'xmpNote:HasExtendedXMP="0123456789ABCDEF0123456789ABCDEF"/>', xmlns="")
    extended = dmi(VOCAB + "DMI-PROHIBITED", "element", wrapper=False)
    guid = b"0123456789ABCDEF0123456789ABCDEF"
    header = b"http://ns.adobe.com/xmp/extension/\x00" + guid + struct.pack(">I", len(extended))
    half = len(extended) // 2
    pieces = [app1(header + struct.pack(">I", half) + extended[half:]),  # out of order
              app1(header + struct.pack(">I", 0) + extended[:half])]
    body = jpeg(main)
    body = body[:20] + b"".join(pieces) + body[20:]
    assert kind(read_iptc_data_mining(body)) == DENIED
    missing = jpeg(main)
    missing = missing[:20] + pieces[0] + missing[20:]
    assert read_iptc_data_mining(missing) == NO_SIGNAL


def test_jpeg_xmp_after_sos_is_not_metadata() -> None:
    body = jpeg()
    body = body[:-2] + app1(b"http://ns.adobe.com/xap/1.0/\x00" + DENY) + body[-2:]
    assert extract_xmp_packets(body) == []


def test_raw_scan_finds_several_packets_and_respects_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    allowed = dmi(VOCAB + "DMI-ALLOWED")
    body = b"\x00" * 100 + allowed + b"\x00" * 1000 + DENY + b"\x00" * 100
    assert extract_xmp_packets(body) == [allowed, DENY]
    monkeypatch.setattr(metadata, "RAW_SCAN_LIMIT", 1000)
    assert extract_xmp_packets(body) == [allowed]
    assert kind(read_iptc_data_mining(body)) == ALLOWED


@pytest.mark.parametrize("body", [
    b"", b"\xff\xd8", b"\x89PNG\r\n\x1a\n", b"RIFF\x00\x00\x00\x00WEBP", b"GIF89a", b"not an image",
    b"<x:xmpmeta" * 100_000,  # start markers without an end: bounded work
    b"<?xpacket begin" * 50_000 + b"<?xpacket end",
], ids=["empty", "soi", "png-sig", "riff", "gif-sig", "text", "many-starts", "many-xpackets"])
def test_degenerate_bodies(body: bytes) -> None:
    start = time.perf_counter()
    assert check_embedded(body, None, use_c2pa=False) == NO_SIGNAL
    assert time.perf_counter() - start < 0.5


@pytest.mark.parametrize("make", [jpeg, png, webp, lambda: _saved("GIF"), lambda: _saved("BMP")],
                         ids=["jpeg", "png", "webp", "gif", "bmp"])
def test_images_without_xmp(make: Callable[[], bytes]) -> None:
    body = make()
    assert extract_xmp_packets(body) == []
    assert check_embedded(body, None, use_c2pa=False) == NO_SIGNAL


def test_xmp_without_data_mining() -> None:
    assert check_embedded(jpeg(NO_DATA_MINING), None, use_c2pa=False) == NO_SIGNAL


def test_damaged_containers_never_raise() -> None:
    bodies = [jpeg(DENY), png(DENY, kind="iTXt-z"), png(DENY, where="after"), webp(DENY), gif(DENY)]
    for body in bodies:
        for cut in range(0, len(body), max(1, len(body) // 97)):
            check_embedded(body[:cut], None, use_c2pa=False)
            flipped = bytearray(body)
            flipped[cut] ^= 0xA5
            check_embedded(bytes(flipped), None, use_c2pa=False)


def test_many_tiny_png_chunks_are_bounded() -> None:
    body = png()
    body = body[:33] + png_chunk(b"abCd", b"") * 300_000 + body[33:]
    start = time.perf_counter()
    assert check_embedded(body, None, use_c2pa=False) == NO_SIGNAL
    assert time.perf_counter() - start < 1.0


# --- threads and cost -------------------------------------------------------------------------

def test_thread_safe() -> None:
    bodies = ([jpeg(dmi(VOCAB + code, form)) for code in EXPECTED for form in FORMS]
              + [png(DENY, where="after"), webp(dmi("DMI-ALLOWED")), jpeg(BILLION_LAUGHS), jpeg()])
    serial = [check_embedded(b, None) for b in bodies]
    with ThreadPoolExecutor(8) as pool:
        for _ in range(5):
            assert list(pool.map(lambda b: check_embedded(b, None), bodies)) == serial


def test_cost_of_a_jpeg_without_xmp() -> None:
    body = jpeg(size=(400, 300), quality=95)
    runs = 500
    start = time.perf_counter()
    for _ in range(runs):
        check_embedded(body, "image/jpeg", use_c2pa=False)
    per_image = (time.perf_counter() - start) / runs
    assert per_image < 1e-3  # measured ~5 µs; a loose bound for slow machines


# --- C2PA: the pure interpreter ---------------------------------------------------------------

ACTIVE = "urn:c2pa:active"
PARENT = "urn:c2pa:parent"


def store(*assertions: dict[str, Any], active: str | None = ACTIVE,
          others: dict[str, list[dict[str, Any]]] | None = None, **extra: Any) -> dict[str, Any]:
    manifests = {ACTIVE: {"label": ACTIVE, "assertions": list(assertions)}}
    for label, more in (others or {}).items():
        manifests[label] = {"label": label, "assertions": more}
    result: dict[str, Any] = {"manifests": manifests, **extra}
    if active is not None:
        result["active_manifest"] = active
    return result


def tm(label: str = "cawg.training-mining", **uses: str) -> dict[str, Any]:
    """A training-mining assertion; ``ai_training="notAllowed"`` → ``<ns>.ai_training``."""
    ns = label.split(".")[0]
    return {"label": label, "data": {"entries": {f"{ns}.{k}": {"use": v} for k, v in uses.items()}}}


@pytest.mark.parametrize("label", ["c2pa.training-mining", "cawg.training-mining"])
@pytest.mark.parametrize("entry", ["ai_training", "ai_generative_training", "data_mining"])
@pytest.mark.parametrize(("use", "expected"), [
    ("notAllowed", DENIED), ("constrained", DENIED), ("allowed", ALLOWED), ("NotAllowed", DENIED),
    ("maybe", NOTHING),
])
def test_c2pa_entries(label: str, entry: str, use: str, expected: str) -> None:
    verdict = c2pa_training_from_manifest_store(store(tm(label, **{entry: use})))
    assert kind(verdict) == expected
    if expected != NOTHING:
        ns = label.split(".")[0]
        assert verdict.evidence == f"C2PA {label}: {ns}.{entry} use={use}"


def test_c2pa_inference_alone_does_not_deny() -> None:
    for label in ("c2pa.training-mining", "cawg.training-mining"):
        assert c2pa_training_from_manifest_store(store(tm(label, ai_inference="notAllowed"))) == NO_SIGNAL
        assert kind(c2pa_training_from_manifest_store(
            store(tm(label, ai_inference="notAllowed", ai_training="allowed")))) == ALLOWED


def test_c2pa_most_restrictive_entry_and_assertion() -> None:
    verdict = c2pa_training_from_manifest_store(store(
        tm("c2pa.training-mining", ai_training="allowed", ai_inference="allowed"),
        tm("cawg.training-mining", ai_training="allowed", data_mining="constrained")))
    assert verdict == MetadataVerdict(
        True, False, "C2PA cawg.training-mining: cawg.data_mining use=constrained")


def test_c2pa_real_shape_with_constraint_info() -> None:
    assertion = {"label": "cawg.training-mining", "data": {"entries": {
        "cawg.ai_generative_training": {"use": "notAllowed"},
        "cawg.ai_inference": {"use": "allowed"},
        "cawg.data_mining": {"constraint_info": "ask", "use": "constrained"}}}}
    verdict = c2pa_training_from_manifest_store(store(
        {"label": "c2pa.actions.v2", "data": {"actions": [{"action": "c2pa.created"}]}}, assertion))
    assert verdict.evidence == "C2PA cawg.training-mining: cawg.ai_generative_training use=notAllowed"


@pytest.mark.parametrize("label", ["cawg.training-mining.v2", "c2pa.training-mining__1",
                                   "cawg.training-mining.v1__2"])
def test_c2pa_versioned_and_repeated_labels(label: str) -> None:
    verdict = c2pa_training_from_manifest_store(
        store({"label": label, "data": {"entries": {"cawg.ai_training": {"use": "notAllowed"}}}}))
    assert kind(verdict) == DENIED and verdict.evidence is not None and label in verdict.evidence


@pytest.mark.parametrize("label", ["c2pa.actions", "com.example.training-mining",
                                   "cawg.training-mining-extra", "c2pa.training"])
def test_c2pa_other_assertions_ignored(label: str) -> None:
    assert c2pa_training_from_manifest_store(store(tm(label, ai_training="notAllowed"))) == NO_SIGNAL


def test_c2pa_active_manifest_speaks_for_the_image() -> None:
    parent_denies = {PARENT: [tm(ai_training="notAllowed")]}
    parent_allows = {PARENT: [tm(ai_training="allowed")]}
    assert kind(c2pa_training_from_manifest_store(
        store(tm(ai_training="allowed"), others=parent_denies))) == ALLOWED
    assert kind(c2pa_training_from_manifest_store(
        store(tm(ai_training="notAllowed"), others=parent_allows))) == DENIED
    assert c2pa_training_from_manifest_store(store(others=parent_denies)) == NO_SIGNAL


@pytest.mark.parametrize("active", [None, "urn:c2pa:missing", 42])
def test_c2pa_without_usable_active_manifest(active: Any) -> None:
    denies = store(tm(ai_training="allowed"), others={PARENT: [tm(data_mining="notAllowed")]})
    denies["active_manifest"] = active
    assert kind(c2pa_training_from_manifest_store(denies)) == DENIED
    allows = store(tm(ai_training="allowed"))
    allows["active_manifest"] = active
    assert c2pa_training_from_manifest_store(allows) == NO_SIGNAL


def test_c2pa_manifests_as_a_list() -> None:
    data = {"active_manifest": ACTIVE,
            "manifests": [{"label": PARENT, "assertions": []},
                          {"label": ACTIVE, "assertions": [tm(ai_training="notAllowed")]}]}
    assert kind(c2pa_training_from_manifest_store(data)) == DENIED


@pytest.mark.parametrize(("validation", "expected"), [
    ({"validation_state": "Valid"}, ALLOWED),
    ({"validation_state": "Trusted"}, ALLOWED),
    ({"validation_state": "Invalid"}, NOTHING),
    ({"validation_status": [{"code": "signingCredential.untrusted"}]}, ALLOWED),
    ({"validation_status": [{"code": "signingCredential.untrusted"},
                            {"code": "assertion.dataHash.mismatch"}]}, NOTHING),
    ({}, ALLOWED),
])
def test_c2pa_permission_needs_an_untampered_manifest(validation: dict[str, Any], expected: str) -> None:
    assert kind(c2pa_training_from_manifest_store(store(tm(ai_training="allowed"), **validation))) == expected
    # A denial counts whatever the validation says.
    assert kind(c2pa_training_from_manifest_store(store(tm(ai_training="notAllowed"), **validation))) == DENIED


@pytest.mark.parametrize("data", [
    {}, {"manifests": None}, {"manifests": "x", "active_manifest": ACTIVE},
    store({"label": "cawg.training-mining"}),
    store({"label": "cawg.training-mining", "data": {"entries": ["cawg.ai_training"]}}),
    store({"label": "cawg.training-mining", "data": {"entries": {"cawg.ai_training": "notAllowed"}}}),
    store({"label": "cawg.training-mining", "data": {"entries": {"cawg.ai_training": {"use": None}}}}),
    store({"label": None}, "not an assertion"),  # type: ignore[arg-type]
    {"active_manifest": ACTIVE, "manifests": {ACTIVE: {"assertions": "x"}}},
], ids=range(9))
def test_c2pa_malformed_stores(data: dict[str, Any]) -> None:
    assert c2pa_training_from_manifest_store(data) == NO_SIGNAL


# --- C2PA: the reader wrapper -------------------------------------------------------------------

def test_c2pa_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metadata, "C2PA_AVAILABLE", False)
    assert read_c2pa_training(jpeg(), "image/jpeg") is None
    assert check_embedded(jpeg(DENY), "image/jpeg") == read_iptc_data_mining(jpeg(DENY))
    assert check_embedded(jpeg(), "image/jpeg") == NO_SIGNAL


def test_c2pa_import_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metadata, "C2PA_AVAILABLE", True)
    monkeypatch.setitem(sys.modules, "c2pa", None)  # import c2pa → ImportError
    assert read_c2pa_training(jpeg(), "image/jpeg") is None
    assert check_embedded(jpeg(), "image/jpeg") == NO_SIGNAL


needs_c2pa = pytest.mark.skipif(not metadata.C2PA_AVAILABLE, reason="c2pa-python not installed")


@needs_c2pa
@pytest.mark.parametrize("body", [jpeg(), png(), webp(), _saved("GIF"), b"garbage", b""],
                         ids=["jpeg", "png", "webp", "gif", "garbage", "empty"])
def test_c2pa_reader_without_manifest(body: bytes) -> None:
    assert read_c2pa_training(body, "image/jpeg") == NO_SIGNAL
    assert read_c2pa_training(body, None) == NO_SIGNAL


@needs_c2pa
def test_c2pa_reader_on_a_broken_jumbf_segment() -> None:
    body = jpeg()
    broken = b"\xff\xeb" + struct.pack(">H", 2 + 18) + b"JP\x00\x01\x00\x00\x00\x01" + b"\x00\x00\x00\x10jumbxxxx"
    assert read_c2pa_training(body[:20] + broken + body[20:], "image/jpeg") == NO_SIGNAL


# --- C2PA: end to end, signed offline with a throwaway CA -------------------------------------------

CAPTURE = "http://cv.iptc.org/newscodes/digitalsourcetype/digitalCapture"


class Signing:
    """Signs images with c2pa-python's Builder and an ES256 test certificate."""

    def __init__(self) -> None:
        c2pa = pytest.importorskip("c2pa")
        pytest.importorskip("cryptography")
        self.c2pa = c2pa
        self.chain, self.key = _test_certificate()

    def sign(self, body: bytes, mime: str, *assertions: dict[str, Any],
             parent: bytes | None = None) -> bytes:
        action: dict[str, Any] = {"action": "c2pa.created", "digitalSourceType": CAPTURE}
        if parent is not None:
            action = {"action": "c2pa.opened", "parameters": {"ingredientIds": ["parent"]}}
        manifest = {
            "claim_generator_info": [{"name": "consentfetch-tests", "version": "0"}],
            "title": "test image",
            "assertions": [{"label": "c2pa.actions", "data": {"actions": [action]}}, *assertions],
        }
        signer = self.c2pa.Signer.from_info(
            self.c2pa.C2paSignerInfo(self.c2pa.C2paSigningAlg.ES256, self.chain, self.key, None))
        out = io.BytesIO()
        with self.c2pa.Builder(manifest) as builder:
            if parent is not None:
                builder.add_ingredient({"title": "parent", "relationship": "parentOf", "label": "parent"}, mime,
                                       io.BytesIO(parent))
            builder.sign(signer, mime, io.BytesIO(body), out)
        signer.close()
        return out.getvalue()


def _test_certificate() -> tuple[bytes, bytes]:
    """(leaf + CA chain, leaf key) in PEM: a CA and an end-entity certificate
    with the key usage C2PA asks for (digitalSignature, emailProtection)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common),
                          x509.NameAttribute(NameOID.ORGANIZATION_NAME, "consentfetch tests")])

    def usage(sign: bool) -> x509.KeyUsage:
        return x509.KeyUsage(digital_signature=sign, content_commitment=False, key_encipherment=False,
                             data_encipherment=False, key_agreement=False, key_cert_sign=not sign,
                             crl_sign=not sign, encipher_only=False, decipher_only=False)

    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())

    def certificate(subject: str, public: Any, ca: bool) -> x509.CertificateBuilder:
        return (x509.CertificateBuilder().subject_name(name(subject)).issuer_name(name("Test CA"))
                .public_key(public).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=30))
                .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
                .add_extension(usage(sign=not ca), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False))

    ca_cert = certificate("Test CA", ca_key.public_key(), ca=True).sign(ca_key, hashes.SHA256())
    leaf = (certificate("Test signer", key.public_key(), ca=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    chain = leaf.public_bytes(pem) + ca_cert.public_bytes(pem)
    private = key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return chain, private


@pytest.fixture(scope="module")
def signing() -> Signing:
    return Signing()


@needs_c2pa
def test_c2pa_signed_jpeg_denies(signing: Signing) -> None:
    body = signing.sign(jpeg(), "image/jpeg", tm(ai_training="notAllowed", ai_inference="allowed"))
    expected = MetadataVerdict(True, False, "C2PA cawg.training-mining: cawg.ai_training use=notAllowed")
    assert read_c2pa_training(body, "image/jpeg") == expected
    assert check_embedded(body, "image/jpeg") == expected
    assert check_embedded(body, None) == expected
    assert check_embedded(body, "image/jpeg", use_c2pa=False) == NO_SIGNAL


@needs_c2pa
@pytest.mark.parametrize(("make", "mime"), [(png, "image/png"), (webp, "image/webp")])
def test_c2pa_signed_png_and_webp(signing: Signing, make: Callable[[], bytes], mime: str) -> None:
    body = signing.sign(make(), mime, tm("c2pa.training-mining", data_mining="constrained"))
    assert check_embedded(body, "application/octet-stream").evidence == \
        "C2PA c2pa.training-mining: c2pa.data_mining use=constrained"


@needs_c2pa
def test_c2pa_signed_permission_and_tampering(signing: Signing) -> None:
    body = signing.sign(jpeg(size=(200, 150)), "image/jpeg", tm("c2pa.training-mining", ai_training="allowed"))
    assert check_embedded(body, "image/jpeg") == MetadataVerdict(
        False, True, "C2PA c2pa.training-mining: c2pa.ai_training use=allowed")
    tampered = bytearray(body)
    tampered[-200] ^= 0xFF  # in the entropy-coded data: the data hash no longer matches
    assert check_embedded(bytes(tampered), "image/jpeg") == NO_SIGNAL
    denying = bytearray(signing.sign(jpeg(size=(200, 150)), "image/jpeg", tm(ai_training="notAllowed")))
    denying[-200] ^= 0xFF
    assert check_embedded(bytes(denying), "image/jpeg").denied


@needs_c2pa
def test_c2pa_signed_ingredient_does_not_speak_for_the_image(signing: Signing) -> None:
    parent = signing.sign(jpeg(), "image/jpeg", tm(ai_training="notAllowed"))
    child = signing.sign(jpeg(), "image/jpeg", tm("c2pa.training-mining", ai_training="allowed"),
                         parent=parent)
    reader = signing.c2pa.Reader("image/jpeg", io.BytesIO(child))
    assert len(json.loads(reader.json())["manifests"]) == 2
    reader.close()
    assert kind(check_embedded(child, "image/jpeg")) == ALLOWED


@needs_c2pa
def test_c2pa_and_xmp_most_restrictive_wins(signing: Signing) -> None:
    both = signing.sign(jpeg(dmi(VOCAB + "DMI-ALLOWED")), "image/jpeg", tm(ai_training="notAllowed"))
    assert check_embedded(both, "image/jpeg").evidence == \
        "C2PA cawg.training-mining: cawg.ai_training use=notAllowed"
    assert kind(check_embedded(both, "image/jpeg", use_c2pa=False)) == ALLOWED
    xmp_denies = signing.sign(jpeg(DENY), "image/jpeg", tm(ai_training="allowed"))
    assert check_embedded(xmp_denies, "image/jpeg").evidence == \
        f"XMP plus:DataMining = {VOCAB}DMI-PROHIBITED-AIMLTRAINING"


@needs_c2pa
def test_c2pa_reader_threads(signing: Signing) -> None:
    bodies = [signing.sign(jpeg(), "image/jpeg", tm(ai_training=use))
              for use in ("notAllowed", "allowed", "constrained")] + [jpeg(), png()]
    serial = [check_embedded(b, None) for b in bodies]
    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(lambda b: check_embedded(b, None), bodies * 8)) == serial * 8
