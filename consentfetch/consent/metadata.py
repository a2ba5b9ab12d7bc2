"""May this image be used for AI training? What its own bytes say.

Two embedded signals, read before any pixel is decoded (CONSENT.md,
"Embedded metadata"):

* **IPTC Data Mining** (Photo Metadata 2023.1): the XMP property
  ``DataMining`` of the PLUS namespace ``http://ns.useplus.org/ldf/xmp/1.0/``
  (usually written ``plus:DataMining``), whose value is a URI under
  ``http://ns.useplus.org/ldf/vocab/``. Every ``DMI-PROHIBITED*`` value denies;
  ``DMI-ALLOWED`` is an explicit permission; ``DMI-UNSPECIFIED`` says nothing.
* **C2PA / CAWG training-mining** assertions in an embedded C2PA manifest
  store, read with the optional ``c2pa-python`` package.

Everything here is a pure function of the bytes: no state but a lazily made
c2pa ``Context`` (per process, behind a lock), so it is safe from many
threads. :func:`check_embedded` is what the pipeline calls; the other
functions are its parts, public for tests and tools.

Finding XMP packets (:func:`extract_xmp_packets`)
--------------------------------------------------
We walk the container ourselves instead of reading Pillow's
``im.info["xmp"]``: Pillow keeps only the *last* XMP segment of a JPEG, does
not see a PNG ``iTXt`` chunk after ``IDAT`` until the pixels are decoded, and
the walk costs a few microseconds where a lazy ``Image.open`` costs tens.
(Tests check that we find the packet Pillow finds.)

* JPEG: every ``APP1`` segment with the ``http://ns.adobe.com/xap/1.0/\\0``
  header, up to the first ``SOS``; Extended XMP (``APP1``
  ``http://ns.adobe.com/xmp/extension/\\0`` pieces) is reassembled, per GUID,
  into one more packet when every piece is there.
* PNG: ``iTXt`` (compressed or not), ``zTXt`` and ``tEXt`` chunks with the
  keyword ``XML:com.adobe.xmp``, before or after ``IDAT``. CRCs are not
  checked: a damaged checksum does not change what the owner wrote.
  ImageMagick's hex-encoded ``Raw profile type xmp`` is not read.
* WebP: the RIFF ``XMP `` chunk.
* Anything else (TIFF, GIF, AVIF, HEIC, ...): the packet scan that XMP Part 3
  allows for unknown formats: ``<?xpacket begin`` ... ``<?xpacket end ...?>``,
  or ``<x:xmpmeta`` ... ``</x:xmpmeta>`` without the wrapper, in the first
  :data:`RAW_SCAN_LIMIT` bytes. Only UTF-8 packets are found this way, and a
  compressed packet is not seen at all.

At most :data:`MAX_PACKETS` packets of at most :data:`MAX_PACKET_BYTES` each
are kept (a larger packet is skipped); a container walk stops at the first
structural damage, and after :data:`MAX_CHUNKS` segments or chunks, keeping
what it found so far.

Reading a packet (:func:`data_mining_from_xmp`)
-----------------------------------------------
With pyexpat, namespace-aware: the property is matched on its namespace URI
and local name, whatever prefix is bound (a ``DataMining`` in another
namespace is ignored). The value counts in any of the three RDF/XML forms: an
attribute (``plus:DataMining="..."``), element text, or
``rdf:resource="..."`` (and ``rdf:value`` or text nested inside the element).
Reading choices:

* The URI prefix is compared case-insensitively, ``https://`` counts as
  ``http://``, and a bare code (``DMI-PROHIBITED-AIMLTRAINING``, no URI) is
  accepted: all three are unambiguous about the owner's intent. Any code
  beginning ``DMI-PROHIBITED`` denies, including ones newer than this module.
  Values outside the vocabulary say nothing.
* Several values, in one packet or several: the most restrictive wins
  (a prohibition over a permission over nothing); the evidence names the
  first prohibition found, else the first permission.
* A packet with a DTD or entity declaration (``<!DOCTYPE``, ``<!ENTITY``) is
  refused unparsed: no billion laughs, no external entities. Refused,
  malformed and oversized packets give no signal (logged at debug level);
  a verdict carries evidence only when it denies or allows.

C2PA (:func:`read_c2pa_training`, :func:`c2pa_training_from_manifest_store`)
----------------------------------------------------------------------------
``c2pa-python`` is imported on first use. Without it, :data:`C2PA_AVAILABLE`
is false and :func:`read_c2pa_training` returns ``None``. The reader runs
only when the container holds a C2PA box (JPEG ``APP11`` JUMBF, PNG
``caBX``, WebP ``C2PA``; for other formats c2pa looks for itself), and never
goes to the network: no remote manifests, no OCSP. Errors (no manifest,
unsupported format, damaged store) give no signal. Reading choices:

* The active manifest speaks for the image; ingredient manifests (the
  history of its sources) do not. When the store names no usable active
  manifest, a denial in any manifest still counts but a permission does not.
* Entries of ``c2pa.training-mining`` and ``cawg.training-mining`` (also
  with a version suffix ``.v2`` or an instance suffix ``__1``) count, all but
  ``*.ai_inference``, which is about using a model, not training one.
  ``notAllowed`` and ``constrained`` deny; ``allowed`` permits.
* A denial counts whatever the validation result: an opt-out does not need
  a valid signature. A permission does not count when the store's validation
  reports the manifest or the asset as tampered with
  (``validation_state: Invalid``); an untrusted signing certificate (the
  usual case without a configured trust list) does not withhold it.
"""

from __future__ import annotations

import importlib.util
import io
import json
import logging
import os
import struct
import threading
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, NamedTuple
from xml.parsers import expat

__all__ = [
    "C2PA_AVAILABLE",
    "MAX_CHUNKS",
    "MAX_PACKETS",
    "MAX_PACKET_BYTES",
    "MetadataVerdict",
    "NO_SIGNAL",
    "PLUS_NAMESPACE",
    "RAW_SCAN_LIMIT",
    "VOCAB_PREFIX",
    "c2pa_training_from_manifest_store",
    "check_embedded",
    "data_mining_from_xmp",
    "extract_xmp_packets",
    "read_c2pa_training",
    "read_iptc_data_mining",
]

log = logging.getLogger(__name__)

PLUS_NAMESPACE: Final = "http://ns.useplus.org/ldf/xmp/1.0/"
VOCAB_PREFIX: Final = "http://ns.useplus.org/ldf/vocab/"

MAX_PACKET_BYTES: Final = 1 << 20  # a larger packet is skipped, not parsed
MAX_PACKETS: Final = 16  # packets kept per image
MAX_CHUNKS: Final = 100_000  # JPEG segments / PNG or WebP chunks walked
RAW_SCAN_LIMIT: Final = 8 << 20  # bytes searched for packets in other formats

# Is c2pa-python installed? Found without importing it (it loads a large
# native library); the import happens on first use.
C2PA_AVAILABLE: bool = importlib.util.find_spec("c2pa") is not None

_EVIDENCE_MAX: Final = 200


@dataclass(frozen=True, slots=True)
class MetadataVerdict:
    """What the embedded metadata says about AI training.

    ``denied`` and ``allowed`` are never both true; ``evidence`` is set
    exactly when one of them is.
    """

    denied: bool
    allowed: bool  # an explicit permission (DMI-ALLOWED, C2PA allowed), for the opt-in profile
    evidence: str | None  # e.g. "XMP plus:DataMining = http://ns.useplus.org/ldf/vocab/DMI-PROHIBITED"


NO_SIGNAL: Final = MetadataVerdict(False, False, None)


def check_embedded(body: bytes, mime_type: str | None, *,
                   use_c2pa: bool = True) -> MetadataVerdict:
    """The verdict of the image's own metadata: IPTC first, then C2PA (when
    ``use_c2pa`` and c2pa-python is installed); the most restrictive wins.

    ``mime_type`` (the Content-Type, parameters allowed) is only a hint for
    c2pa; the container is recognised from the bytes.
    """
    container = _scan(body)
    iptc = _verdict_of_packets(container.packets)
    if iptc.denied or not use_c2pa or not C2PA_AVAILABLE:
        return iptc
    c2pa = _read_c2pa(body, mime_type, container)
    return iptc if c2pa is None else _most_restrictive((iptc, c2pa))


# --- IPTC Data Mining (XMP) ---------------------------------------------------

def read_iptc_data_mining(body: bytes) -> MetadataVerdict:
    """The IPTC Data Mining verdict of every XMP packet in ``body``."""
    return _verdict_of_packets(extract_xmp_packets(body))


def extract_xmp_packets(body: bytes) -> list[bytes]:
    """The raw XMP packets of a JPEG, PNG or WebP, or found by scanning any
    other format; in file order, at most :data:`MAX_PACKETS`."""
    return _scan(body).packets


def data_mining_from_xmp(packet: bytes | str) -> MetadataVerdict:
    """The IPTC Data Mining verdict of one XMP packet."""
    if len(packet) > MAX_PACKET_BYTES:
        log.debug("XMP packet of %d bytes not parsed (limit %d)", len(packet), MAX_PACKET_BYTES)
        return NO_SIGNAL
    if isinstance(packet, bytes) and _ascii_compatible(packet):
        packet = packet.rstrip(b"\x00")  # some writers pad with NULs
        if b"DataMining" not in packet:  # fast path: the local name must appear
            return NO_SIGNAL
        if b"<!DOCTYPE" in packet or b"<!ENTITY" in packet:
            log.debug("XMP packet with a DTD or entity declaration refused")
            return NO_SIGNAL
    elif isinstance(packet, str):
        if "DataMining" not in packet:
            return NO_SIGNAL
        if "<!DOCTYPE" in packet or "<!ENTITY" in packet:
            log.debug("XMP packet with a DTD or entity declaration refused")
            return NO_SIGNAL
    values = _data_mining_values(packet)
    return _most_restrictive(_verdict_of_value(value) for value in values)


def _verdict_of_packets(packets: Iterable[bytes]) -> MetadataVerdict:
    return _most_restrictive(data_mining_from_xmp(packet) for packet in packets)


def _verdict_of_value(value: str) -> MetadataVerdict:
    code = _dmi_code(value)
    if code is None:
        return NO_SIGNAL
    evidence = _short(f"XMP plus:DataMining = {value.strip()}")
    if code.startswith("DMI-PROHIBITED"):
        return MetadataVerdict(True, False, evidence)
    if code == "DMI-ALLOWED":
        return MetadataVerdict(False, True, evidence)
    return NO_SIGNAL  # DMI-UNSPECIFIED or an unknown code


def _dmi_code(value: str) -> str | None:
    """``DMI-...`` of a vocabulary URI or bare code, upper-cased; else None."""
    text = value.strip()
    lowered = text.lower()
    for prefix in (VOCAB_PREFIX, "https" + VOCAB_PREFIX[4:]):
        if lowered.startswith(prefix):
            text = text[len(prefix):]
            break
    code = text.strip().rstrip("/").upper()
    return code if code.startswith("DMI-") else None


class _Refused(Exception):
    """A DTD or entity declaration: stop parsing at once."""


_XML_SEP: Final = " "
_DATA_MINING: Final = PLUS_NAMESPACE + _XML_SEP + "DataMining"
_RDF: Final = "http://www.w3.org/1999/02/22-rdf-syntax-ns#" + _XML_SEP
_VALUE_ATTRS: Final = frozenset({_RDF + "resource", _RDF + "value"})


class _DataMiningCollector:
    """Expat handlers gathering every value of plus:DataMining in a packet."""

    __slots__ = ("values", "_depth", "_text")

    def __init__(self) -> None:
        self.values: list[str] = []
        self._depth = 0  # > 0 inside a DataMining element
        self._text: list[str] = []

    def start(self, name: str, attrs: dict[str, str]) -> None:
        value = attrs.get(_DATA_MINING)
        if value is not None:
            self.values.append(value)
        if self._depth or name == _DATA_MINING:
            self._flush()
            self._depth += 1
            self.values.extend(v for k, v in attrs.items() if k in _VALUE_ATTRS)

    def end(self, name: str) -> None:
        if self._depth:
            self._flush()
            self._depth -= 1

    def text(self, data: str) -> None:
        if self._depth:
            self._text.append(data)

    def _flush(self) -> None:
        text = "".join(self._text).strip()
        self._text.clear()
        if text:
            self.values.append(text)


def _data_mining_values(packet: bytes | str) -> list[str]:
    """Every plus:DataMining value in the packet; [] if refused or malformed."""
    collector = _DataMiningCollector()
    parser = expat.ParserCreate(namespace_separator=_XML_SEP)
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.buffer_text = True
    parser.StartElementHandler = collector.start
    parser.EndElementHandler = collector.end
    parser.CharacterDataHandler = collector.text
    parser.StartDoctypeDeclHandler = _refuse
    parser.EntityDeclHandler = _refuse
    parser.ExternalEntityRefHandler = _refuse
    try:
        parser.Parse(packet, True)
    except _Refused:
        log.debug("XMP packet with a DTD or entity declaration refused")
        return []
    except (expat.ExpatError, ValueError) as exc:
        log.debug("malformed XMP packet ignored: %s", exc)
        return []
    return collector.values


def _refuse(*_args: object) -> Any:
    raise _Refused


def _ascii_compatible(packet: bytes) -> bool:
    """Not UTF-16/32 (where byte searches for markup do not work)."""
    head = packet[:4]
    return not (head[:2] in (b"\xff\xfe", b"\xfe\xff") or b"\x00" in head)


# --- containers ---------------------------------------------------------------

class _Container(NamedTuple):
    packets: list[bytes]  # raw XMP packets, file order
    c2pa: bool  # may hold an embedded C2PA manifest store
    mime_type: str | None  # sniffed from the bytes, for a known container


_XMP_APP1: Final = b"http://ns.adobe.com/xap/1.0/\x00"
_EXT_XMP_APP1: Final = b"http://ns.adobe.com/xmp/extension/\x00"
_PNG_SIGNATURE: Final = b"\x89PNG\r\n\x1a\n"
_PNG_XMP_KEYWORD: Final = b"XML:com.adobe.xmp"


def _scan(body: bytes) -> _Container:
    """XMP packets and C2PA presence, from the container structure."""
    if body.startswith(b"\xff\xd8"):
        return _scan_jpeg(body)
    if body.startswith(_PNG_SIGNATURE):
        return _scan_png(body)
    if body[:4] == b"RIFF" and body[8:12] == b"WEBP":
        return _scan_webp(body)
    return _Container(_scan_raw(body), True, None)


def _scan_jpeg(body: bytes) -> _Container:
    packets: list[bytes] = []
    extended: dict[bytes, tuple[int, dict[int, bytes]]] = {}
    c2pa = False
    pos, end = 2, len(body)
    for _ in range(MAX_CHUNKS):
        if pos + 2 > end or body[pos] != 0xFF:
            break
        marker = body[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # no length field
            pos += 2
            continue
        if marker in (0xD9, 0xDA) or pos + 4 > end:  # EOI, SOS: header over
            break
        length = int.from_bytes(body[pos + 2:pos + 4], "big")
        if length < 2:
            break
        segment = body[pos + 4:pos + 2 + length]
        if marker == 0xE1 and segment.startswith(_XMP_APP1):
            packets.append(segment[len(_XMP_APP1):])
        elif marker == 0xE1 and segment.startswith(_EXT_XMP_APP1):
            _add_extended_xmp(extended, segment[len(_EXT_XMP_APP1):])
        elif marker == 0xEB and segment.startswith(b"JP"):  # JUMBF: C2PA
            c2pa = True
        pos += 2 + length
    packets.extend(_joined_extended_xmp(extended))
    return _Container(_kept(packets), c2pa, "image/jpeg")


def _add_extended_xmp(parts: dict[bytes, tuple[int, dict[int, bytes]]], data: bytes) -> None:
    """One Extended XMP piece: 32-byte GUID, full length, offset, bytes."""
    if len(data) < 40:
        return
    guid = data[:32]
    full_length, offset = struct.unpack_from(">II", data, 32)
    if full_length > MAX_PACKET_BYTES:
        return
    known_length, pieces = parts.setdefault(guid, (full_length, {}))
    if known_length == full_length:
        pieces[offset] = data[40:]


def _joined_extended_xmp(parts: dict[bytes, tuple[int, dict[int, bytes]]]) -> list[bytes]:
    joined = []
    for full_length, pieces in parts.values():
        packet = b""
        for offset in sorted(pieces):
            if offset != len(packet):
                break
            packet += pieces[offset]
        if len(packet) == full_length:
            joined.append(packet)
    return joined


def _scan_png(body: bytes) -> _Container:
    packets: list[bytes] = []
    c2pa = False
    pos, end = len(_PNG_SIGNATURE), len(body)
    for _ in range(MAX_CHUNKS):
        if pos + 8 > end:
            break
        length, kind = struct.unpack_from(">I4s", body, pos)
        data = body[pos + 8:pos + 8 + length]
        if kind in (b"iTXt", b"zTXt", b"tEXt"):
            packet = _png_text_xmp(kind, data)
            if packet is not None:
                packets.append(packet)
        elif kind == b"caBX":
            c2pa = True
        elif kind == b"IEND":
            break
        pos += 12 + length
    return _Container(_kept(packets), c2pa, "image/png")


def _png_text_xmp(kind: bytes, data: bytes) -> bytes | None:
    """The XMP packet of a PNG text chunk with the XMP keyword, else None."""
    keyword, sep, rest = data.partition(b"\x00")
    if keyword != _PNG_XMP_KEYWORD or not sep:
        return None
    if kind == b"tEXt":
        return rest
    if kind == b"zTXt":
        return _inflate(rest[1:])
    if len(rest) < 2:  # iTXt: flag, method, language\0, translated keyword\0, text
        return None
    compressed = rest[0] == 1
    _, _, rest = rest[2:].partition(b"\x00")
    _, _, text = rest.partition(b"\x00")
    return _inflate(text) if compressed else text


def _inflate(data: bytes) -> bytes | None:
    """zlib data inflated to at most MAX_PACKET_BYTES; None if larger or bad."""
    try:
        out = zlib.decompressobj().decompress(data, MAX_PACKET_BYTES + 1)
    except zlib.error:
        return None
    return out if len(out) <= MAX_PACKET_BYTES else None


def _scan_webp(body: bytes) -> _Container:
    packets: list[bytes] = []
    c2pa = False
    pos = 12
    end = min(len(body), 8 + int.from_bytes(body[4:8], "little"))
    for _ in range(MAX_CHUNKS):
        if pos + 8 > end:
            break
        kind = body[pos:pos + 4]
        length = int.from_bytes(body[pos + 4:pos + 8], "little")
        if kind == b"XMP ":
            packets.append(body[pos + 8:pos + 8 + length])
        elif kind == b"C2PA":
            c2pa = True
        pos += 8 + length + (length & 1)
    return _Container(_kept(packets), c2pa, "image/webp")


# Where a packet found by scanning starts, and the marker that ends it.
_RAW_MARKERS: Final = {
    b"<?xpacket begin": b"<?xpacket end",
    b"<x:xmpmeta": b"</x:xmpmeta>",
    b"<x:xapmeta": b"</x:xapmeta>",  # XMP before 2004
}
_RAW_TRIES: Final = 4 * MAX_PACKETS  # start markers looked at, with or without an end


def _scan_raw(body: bytes) -> list[bytes]:
    """XMP packets found by searching the bytes (XMP Part 3, packet scanning)."""
    limit = min(len(body), RAW_SCAN_LIMIT)
    next_at = {start: body.find(start, 0, limit) for start in _RAW_MARKERS}
    packets: list[bytes] = []
    pos = 0
    for _ in range(_RAW_TRIES):
        found = [(at, start) for start, at in next_at.items() if at >= 0]
        if not found or len(packets) >= MAX_PACKETS:
            break
        at, start = min(found)
        stop = _raw_packet_end(body, at, _RAW_MARKERS[start])
        if stop > 0:
            packets.append(body[at:stop])
        pos = stop if stop > 0 else at + len(start)
        for marker, marker_at in next_at.items():
            if 0 <= marker_at < pos:
                next_at[marker] = body.find(marker, pos, limit)
    return packets


def _raw_packet_end(body: bytes, start: int, end_marker: bytes) -> int:
    """Where the packet starting at ``start`` ends; -1 if not within bounds."""
    bound = min(len(body), start + MAX_PACKET_BYTES)
    at = body.find(end_marker, start, bound)
    if at < 0:
        return -1
    if end_marker != b"<?xpacket end":
        return at + len(end_marker)
    close = body.find(b"?>", at, min(bound, at + 64))
    return -1 if close < 0 else close + 2


def _kept(packets: list[bytes]) -> list[bytes]:
    return [p for p in packets if len(p) <= MAX_PACKET_BYTES][:MAX_PACKETS]


# --- C2PA -----------------------------------------------------------------------

_TRAINING_MINING: Final = frozenset({"c2pa.training-mining", "cawg.training-mining"})
_DENYING_USES: Final = frozenset({"notallowed", "constrained"})


def c2pa_training_from_manifest_store(store: Mapping[str, Any]) -> MetadataVerdict:
    """The training-mining verdict of a manifest store, as c2pa's
    ``Reader.json()`` returns it (parsed)."""
    manifests = _manifests(store.get("manifests"))
    active = store.get("active_manifest")
    if isinstance(active, str) and active in manifests:
        verdict = _manifest_verdict(manifests[active])
        if verdict.allowed and _failed_validation(store):
            log.debug("C2PA permission ignored: the manifest store failed validation")
            return NO_SIGNAL
        return verdict
    # No usable active manifest: a denial anywhere counts, a permission not.
    for manifest in manifests.values():
        verdict = _manifest_verdict(manifest)
        if verdict.denied:
            return verdict
    return NO_SIGNAL


def _manifests(value: object) -> dict[str, Mapping[str, Any]]:
    """Manifests by label: a mapping, or a list of manifests with a label."""
    if isinstance(value, Mapping):
        items: Iterable[tuple[object, object]] = value.items()
    elif isinstance(value, list):
        items = ((m.get("label") if isinstance(m, Mapping) else None, m) for m in value)
    else:
        return {}
    return {k: m for k, m in items if isinstance(k, str) and isinstance(m, Mapping)}


def _manifest_verdict(manifest: Mapping[str, Any]) -> MetadataVerdict:
    verdicts: list[MetadataVerdict] = []
    assertions = manifest.get("assertions")
    for assertion in assertions if isinstance(assertions, list) else ():
        if not isinstance(assertion, Mapping):
            continue
        label = assertion.get("label")
        if not isinstance(label, str) or _base_label(label) not in _TRAINING_MINING:
            continue
        data = assertion.get("data")
        entries = data.get("entries") if isinstance(data, Mapping) else None
        if isinstance(entries, Mapping):
            verdicts.extend(_entry_verdict(label, name, entry) for name, entry in entries.items())
    return _most_restrictive(verdicts)


def _base_label(label: str) -> str:
    """``cawg.training-mining`` of ``cawg.training-mining.v2__1``."""
    label = label.partition("__")[0]
    head, dot, tail = label.rpartition(".")
    return head if dot and tail[:1] == "v" and tail[1:].isdigit() else label


def _entry_verdict(label: str, name: object, entry: object) -> MetadataVerdict:
    if not isinstance(name, str) or name.rpartition(".")[2] == "ai_inference":
        return NO_SIGNAL
    use = entry.get("use") if isinstance(entry, Mapping) else None
    if not isinstance(use, str):
        return NO_SIGNAL
    evidence = _short(f"C2PA {label}: {name} use={use}")
    if use.lower() in _DENYING_USES:
        return MetadataVerdict(True, False, evidence)
    if use.lower() == "allowed":
        return MetadataVerdict(False, True, evidence)
    return NO_SIGNAL


def _failed_validation(store: Mapping[str, Any]) -> bool:
    """Did validation find the manifest or the asset tampered with?"""
    state = store.get("validation_state")
    if isinstance(state, str):
        return state.lower() == "invalid"
    # Older c2pa: only a list of failure codes. Trust is not integrity.
    statuses = store.get("validation_status")
    codes = [s.get("code") for s in statuses if isinstance(s, Mapping)] \
        if isinstance(statuses, list) else []
    return any(isinstance(c, str) and c not in _TRUST_ONLY_CODES for c in codes)


_TRUST_ONLY_CODES: Final = frozenset({
    "signingCredential.untrusted", "signingCredential.ocsp.skipped",
    "signingCredential.ocsp.inaccessible", "signingCredential.ocsp.unknown",
    "timeStamp.untrusted",
})


def read_c2pa_training(body: bytes, mime_type: str | None) -> MetadataVerdict | None:
    """The training-mining verdict of the C2PA manifest store embedded in
    ``body``; ``None`` when c2pa-python is not installed."""
    if not C2PA_AVAILABLE:
        return None
    return _read_c2pa(body, mime_type, _scan(body))


# No network from the reader: remote manifests and OCSP are not fetched.
_C2PA_SETTINGS: Final = {
    "verify": {"remote_manifest_fetch": False, "ocsp_fetch": False},
    "core": {"allowed_network_hosts": []},
}
_c2pa_lock = threading.Lock()
_c2pa_context: tuple[int, Any] | None = None  # (pid, c2pa.Context)
_c2pa_warned = False


def _read_c2pa(body: bytes, mime_type: str | None, container: _Container) -> MetadataVerdict | None:
    c2pa = _import_c2pa()
    if c2pa is None:
        return None
    if not container.c2pa:
        return NO_SIGNAL
    fmt = container.mime_type or _image_mime(mime_type)
    try:
        reader = c2pa.Reader.try_create(fmt, io.BytesIO(body), context=_context(c2pa))
        if reader is None:
            return NO_SIGNAL
        with reader:
            store = json.loads(reader.json())
    except (c2pa.C2paError, OSError, ValueError) as exc:
        log.debug("no C2PA signal: %s", exc)
        return NO_SIGNAL
    if not isinstance(store, Mapping):
        return NO_SIGNAL
    return c2pa_training_from_manifest_store(store)


def _import_c2pa() -> Any:
    """The c2pa module; None if it cannot be imported or lacks the API we use
    (``Context``, which lets us turn network access off). Warns once."""
    global _c2pa_warned
    try:
        import c2pa
    except (ImportError, OSError) as exc:  # OSError: its native library
        problem = f"c2pa-python cannot be imported ({exc}): C2PA manifests are not read"
    else:
        if hasattr(c2pa, "Context"):
            return c2pa
        problem = (f"c2pa-python {getattr(c2pa, '__version__', '?')} is too old (no Context): "
                   "C2PA manifests are not read")
    if not _c2pa_warned:
        _c2pa_warned = True
        log.warning("%s", problem)
    return None


def _context(c2pa: Any) -> Any:
    """One c2pa Context per process (a Context does not survive fork)."""
    global _c2pa_context
    pid = os.getpid()
    with _c2pa_lock:
        if _c2pa_context is None or _c2pa_context[0] != pid:
            _c2pa_context = (pid, c2pa.Context.from_dict(_C2PA_SETTINGS))
        return _c2pa_context[1]


def _image_mime(mime_type: str | None) -> str | None:
    """``image/...`` of a Content-Type, else None (c2pa then detects it)."""
    if not mime_type:
        return None
    mime = mime_type.partition(";")[0].strip().lower()
    return mime if mime.startswith("image/") else None


# --- helpers ----------------------------------------------------------------------

def _most_restrictive(verdicts: Iterable[MetadataVerdict]) -> MetadataVerdict:
    """The first denial; else the first permission; else NO_SIGNAL."""
    allowed = NO_SIGNAL
    for verdict in verdicts:
        if verdict.denied:
            return verdict
        if verdict.allowed and not allowed.allowed:
            allowed = verdict
    return allowed


def _short(text: str) -> str:
    return text if len(text) <= _EVIDENCE_MAX else text[: _EVIDENCE_MAX - 3] + "..."
