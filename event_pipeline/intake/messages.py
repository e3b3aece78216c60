"""Every reason intake gives for refusing a file, in English and Korean side by side.

A message key is its IntakeError code, or ``code.variant`` where one code has several
wordings (``empty.sheet``). Parameters are inserted as they are, except ``Phrase`` values,
which are looked up in PHRASES and rendered in the same language (what a file looks like,
field names, hints), and lists, whose items are rendered and joined with " / ".
Parameters are never cell values of data rows (reasons go to Dagster's event log): header
texts only where the row was identified as the header, otherwise counts, offsets, row numbers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

_UPLOAD_HINT = (
    "Please upload the participant list as CSV, XLSX or XLS.",
    "참가자 명단을 CSV, XLSX 또는 XLS 파일로 올려 주세요.",
)
_RESAVE = (
    "Save it in Excel as 'CSV UTF-8' or as an Excel workbook (XLSX) and upload it again.",
    "Excel에서 'CSV UTF-8' 또는 Excel 통합 문서(XLSX)로 저장해 다시 올려 주세요.",
)

# key: (English, Korean)
MESSAGES: dict[str, tuple[str, str]] = {
    "empty": ("The file is empty.", "파일이 비어 있습니다."),
    "empty.sheet": ("The sheet '{sheet}' is empty.", "'{sheet}' 시트가 비어 있습니다."),
    "empty.workbook": (
        "The workbook contains no data (every sheet is empty).",
        "통합 문서에 데이터가 없습니다(모든 시트가 비어 있습니다).",
    ),
    "not_found": ("File not found: {name}", "파일을 찾을 수 없습니다: {name}"),
    "too_large": (
        "The file is too large ({size}); the limit is {limit}. Split the list into smaller files.",
        "파일이 너무 큽니다({size}). 최대 {limit}까지 올릴 수 있습니다. 명단을 여러 파일로 나누어 올려 주세요.",
    ),
    "too_large.grew": ("The file is too large (over {limit}).", "파일이 너무 큽니다({limit} 초과)."),
    "not_a_table": (
        f"This file is not a spreadsheet: it looks like {{looks_like}}. {{hint}}{_UPLOAD_HINT[0]}",
        f"이 파일은 스프레드시트가 아니라 {{looks_like}}인 것 같습니다. {{hint}}{_UPLOAD_HINT[1]}",
    ),
    "not_a_table.binary": (
        f"This file is not a spreadsheet: it contains binary data (a NUL byte at byte offset {{offset}}). "
        f"{_UPLOAD_HINT[0]}",
        f"이 파일은 스프레드시트가 아닙니다: 이진 데이터가 들어 있습니다(바이트 위치 {{offset}}에 NUL 바이트). "
        f"{_UPLOAD_HINT[1]}",
    ),
    "unsupported_format": (
        "This file is {format}, which cannot be read here. Open it in Excel and save it as "
        "'Excel Workbook (*.xlsx)', then upload it again.",
        "이 파일은 {format} 형식이라 읽을 수 없습니다. Excel에서 열어 'Excel 통합 문서(*.xlsx)'로 저장한 뒤 "
        "다시 올려 주세요.",
    ),
    "password_protected": (
        "The workbook is password-protected. Open it in Excel, remove the password "
        "(File > Info > Protect Workbook), save and upload again.",
        "통합 문서에 암호가 설정되어 있습니다. Excel에서 파일을 열어 암호를 해제하고"
        "(파일 > 정보 > 통합 문서 보호) 저장한 뒤 다시 올려 주세요.",
    ),
    "undecodable": (
        "The text of this file is neither UTF-8 nor Korean (cp949), so it cannot be read safely. "
        f"The first invalid byte (reading it as {{encoding}}) is at byte offset {{offset}}: {{context}}. {_RESAVE[0]}",
        "이 파일의 텍스트는 UTF-8도 한국어(cp949)도 아니어서 안전하게 읽을 수 없습니다. "
        f"{{encoding}} 기준으로 첫 잘못된 바이트는 바이트 위치 {{offset}}에 있습니다: {{context}}. {_RESAVE[1]}",
    ),
    "undecodable.declared": (
        "The file says it is {encoding} text but it cannot be decoded: the first invalid byte is at byte offset "
        f"{{offset}}: {{context}}. {_RESAVE[0]}",
        "파일 첫머리에는 {encoding} 텍스트라고 표시되어 있지만 읽을 수 없습니다. 첫 잘못된 바이트는 바이트 위치 "
        f"{{offset}}에 있습니다: {{context}}. {_RESAVE[1]}",
    ),
    "malformed_csv": (
        "The CSV file is malformed and cannot be read: {error}",
        "CSV 파일의 형식이 잘못되어 읽을 수 없습니다: {error}",
    ),
    "malformed_csv.unclosed_quote": (
        "The CSV file is malformed and cannot be read: a quoted value is never closed (the quote opens in record "
        '{record}); check for a stray double quote (").',
        "CSV 파일의 형식이 잘못되어 읽을 수 없습니다: 따옴표로 시작한 값이 닫히지 않았습니다({record}번째 레코드에서 "
        '시작). 잘못 들어간 큰따옴표(")가 있는지 확인해 주세요.',
    ),
    "malformed_csv.widths": (
        "The CSV file is malformed: its rows have inconsistent widths.",
        "CSV 파일의 형식이 잘못되었습니다: 행마다 열 개수가 일정하지 않습니다.",
    ),
    "no_header": (
        "No header row found in the first {rows} rows (the first non-empty row is row {first_row}). "
        "The list needs a header row with a name column (e.g. 이름 / Name) and an email column "
        "(e.g. 이메일 / Email).",
        "처음 {rows}행에서 머리글 행을 찾지 못했습니다(내용이 있는 첫 행은 {first_row}행입니다). "
        "명단에는 이름 열(예: 이름 / Name)과 이메일 열(예: 이메일 / Email)이 있는 머리글 행이 필요합니다.",
    ),
    "missing_columns": (
        "The {fields} column is missing. The header row (row {header_row}) has: {headers}. "
        "Add a column headed one of: {aliases}.",
        "{fields} 열이 없습니다. 머리글 행({header_row}행)에 있는 열: {headers}. "
        "다음 중 하나를 머리글로 하는 열을 추가해 주세요: {aliases}.",
    ),
    "duplicate_columns": (
        "The header row (row {header_row}) has more than one column for the same field ({described}). "
        "Keep one column per field and upload again.",
        "머리글 행({header_row}행)에 같은 항목의 열이 여러 개 있습니다({described}). "
        "항목마다 열을 하나만 남기고 다시 올려 주세요.",
    ),
    "no_data_rows": (
        "The file has a header row but no data rows.",
        "파일에 머리글 행만 있고 데이터 행이 없습니다.",
    ),
    "sheet_not_found": (
        "The workbook has no sheet named '{sheet}'. Its sheets are: {sheets}",
        "통합 문서에 '{sheet}' 시트가 없습니다. 있는 시트: {sheets}",
    ),
    "corrupt.zip": (
        "This file looks like a ZIP/XLSX file but it is damaged or incomplete (was the upload cut short?). "
        "Please save it again and re-upload.",
        "ZIP/XLSX 파일로 보이지만 손상되었거나 일부가 빠져 있습니다(업로드가 중간에 끊겼나요?). "
        "다시 저장해서 올려 주세요.",
    ),
    "corrupt.zip_member": (
        "This Excel (XLSX) file is damaged: its ZIP structure is inconsistent (member '{member}' at byte offset "
        "{offset}: {error}). Please save it again and re-upload.",
        "이 Excel(XLSX) 파일은 손상되었습니다: ZIP 구조가 맞지 않습니다(바이트 위치 {offset}의 '{member}': {error}). "
        "다시 저장해서 올려 주세요.",
    ),
    "corrupt.zip_unsupported": (
        "This Excel (XLSX) file cannot be opened ({error}). Please save it again as a normal .xlsx.",
        "이 Excel(XLSX) 파일을 열 수 없습니다({error}). 일반 .xlsx 파일로 다시 저장해 주세요.",
    ),
    "corrupt.xls": (
        "This Excel (XLS) file could not be read{where} ({error}). Open it in Excel and save it as XLSX.",
        "이 Excel(XLS) 파일을{where} 읽을 수 없습니다({error}). Excel에서 열어 XLSX로 저장해 주세요.",
    ),
    "corrupt.xlsx": (
        "This Excel (XLSX) file could not be read{where} ({error}). Open it in Excel and save it again.",
        "이 Excel(XLSX) 파일을{where} 읽을 수 없습니다({error}). Excel에서 열어 다시 저장해 주세요.",
    ),
    "zip_bomb": (
        "This Excel file was refused because it expands to far more data than it contains ({reason}). "
        "If it is a genuine participant list, save it again or export it as CSV.",
        "이 Excel 파일은 압축을 풀면 실제 내용보다 훨씬 커지므로 거부되었습니다({reason}). "
        "실제 참가자 명단이라면 다시 저장하거나 CSV로 내보내 주세요.",
    ),
}

# Fragments inserted into messages: key: (English, Korean)
PHRASES: dict[str, tuple[str, str]] = {
    "": ("", ""),
    "weak_headers": ("{known} and {others} other column(s)", "{known} 외 {others}개"),
    "duplicate_field": ("{field}: columns {columns}", "{field}: {columns} 열"),
    "at_offset": (" at byte offset {offset}", " 바이트 위치 {offset}에서"),
    "context": ("{hex} (the invalid byte in brackets)", "{hex} (대괄호 안이 잘못된 바이트)"),
    "field.name": ("name", "이름"),
    "field.email": ("email", "이메일"),
    "field.phone": ("phone", "전화번호"),
    "field.department": ("department", "부서"),
    "field.position": ("position", "직급"),
    "zip_bomb.total": (
        "{declared:,} bytes uncompressed, over the {budget:,} byte budget",
        "압축을 풀면 {declared:,}바이트로 허용치 {budget:,}바이트 초과",
    ),
    "zip_bomb.ratio": ("member '{member}' is compressed {ratio:,}:1", "'{member}' 항목의 압축률 {ratio:,}:1"),
    "hint.html": (
        "Some systems export HTML tables with an .xls name; open it in Excel and save as XLSX. ",
        "일부 시스템은 HTML 표를 .xls 이름으로 내보냅니다. Excel에서 열어 XLSX로 저장해 주세요. ",
    ),
    "hint.xml_2003": ("Open it in Excel and save as XLSX. ", "Excel에서 열어 XLSX로 저장해 주세요. "),
    "hint.zip": (
        "If the list is inside it, unzip it first. ",
        "명단이 압축 파일 안에 있다면 먼저 압축을 풀어 주세요. ",
    ),
    "looks_like.pdf": ("a PDF document", "PDF 문서"),
    "looks_like.png": ("a PNG image", "PNG 이미지"),
    "looks_like.jpeg": ("a JPEG image", "JPEG 이미지"),
    "looks_like.gif": ("a GIF image", "GIF 이미지"),
    "looks_like.tiff": ("a TIFF image", "TIFF 이미지"),
    "looks_like.gzip": ("a gzip archive", "gzip 압축 파일"),
    "looks_like.xz": ("an xz archive", "xz 압축 파일"),
    "looks_like.7z": ("a 7-Zip archive", "7-Zip 압축 파일"),
    "looks_like.rar": ("a RAR archive", "RAR 압축 파일"),
    "looks_like.elf": ("a Linux executable", "Linux 실행 파일"),
    "looks_like.rtf": ("an RTF document", "RTF 문서"),
    "looks_like.ps": ("a PostScript document", "PostScript 문서"),
    "looks_like.sqlite": ("an SQLite database", "SQLite 데이터베이스"),
    "looks_like.icon": ("an icon image", "아이콘 이미지"),
    "looks_like.hwp": ("a Hangul (HWP) document", "한글(HWP) 문서"),
    "looks_like.hwpx": ("a Hangul (HWPX) document", "한글(HWPX) 문서"),
    "looks_like.exe": ("a Windows executable", "Windows 실행 파일"),
    "looks_like.bzip2": ("a bzip2 archive", "bzip2 압축 파일"),
    "looks_like.riff": ("a RIFF media file (WebP/WAV/AVI)", "RIFF 미디어 파일(WebP/WAV/AVI)"),
    "looks_like.html": ("a web page (HTML)", "웹 페이지(HTML)"),
    "looks_like.xml_2003": ("an Excel 2003 XML spreadsheet", "Excel 2003 XML 스프레드시트"),
    "looks_like.xml": ("an XML document", "XML 문서"),
    "looks_like.docx": ("a Word document (DOCX)", "Word 문서(DOCX)"),
    "looks_like.pptx": ("a PowerPoint presentation (PPTX)", "PowerPoint 프레젠테이션(PPTX)"),
    "looks_like.odf": ("an OpenDocument file", "OpenDocument 파일"),
    "looks_like.zip": ("a ZIP archive that is not an Excel workbook", "Excel 통합 문서가 아닌 ZIP 압축 파일"),
    "looks_like.doc": ("a legacy Word document (DOC)", "이전 형식의 Word 문서(DOC)"),
    "looks_like.ppt": ("a legacy PowerPoint presentation (PPT)", "이전 형식의 PowerPoint 프레젠테이션(PPT)"),
    "looks_like.ole": (
        "a Microsoft Office compound file that is not an Excel workbook",
        "Excel 통합 문서가 아닌 Microsoft Office 복합 문서",
    ),
    "format.xlsb": ("an Excel binary workbook (XLSB)", "Excel 바이너리 통합 문서(XLSB)"),
    "format.ods": ("an OpenDocument spreadsheet (ODS)", "OpenDocument 스프레드시트(ODS)"),
}


@dataclass(frozen=True)
class Phrase:
    """A PHRASES entry as a message parameter, rendered in the language of the message around it."""

    key: str
    params: Mapping[str, object] = field(default_factory=dict)

    def english(self) -> str:
        return _fill(PHRASES[self.key][0], self.params, 0)


def code_of(key: str) -> str:
    return key.split(".", 1)[0]


def _language_index(language: str) -> int:
    # "ko", "ko-KR", "ko_KR" are Korean; anything else gets English.
    return 1 if language.replace("_", "-").split("-", 1)[0].lower() == "ko" else 0


def _value(value: object, index: int) -> object:
    if isinstance(value, Phrase):
        return _fill(PHRASES[value.key][index], value.params, index)
    if isinstance(value, Sequence) and not isinstance(value, str):
        return " / ".join(str(_value(v, index)) for v in value)
    return value


def _fill(template: str, params: Mapping[str, object], index: int) -> str:
    return template.format(**{name: _value(value, index) for name, value in params.items()})


def render(key: str, language: str, params: Mapping[str, object]) -> str:
    return _fill(MESSAGES[key][_language_index(language)], params, _language_index(language))
