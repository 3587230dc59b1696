"""Tests of document analysis with the real spaCy pipeline and the real embedding tokenizer.

The paragraphs below are HotpotQA dev paragraphs (Yang et al., 2018, CC BY-SA 4.0).
"""

from __future__ import annotations

import json
import time

import pytest

from indexer.analysis import DocumentAnalyzer, resolve_aliases, split_segments, title_head, title_name
from indexer.attributes import parse_date, parse_number
from indexer.embedding import count_tokens
from indexer.normalize import entity_key
from indexer.records import Document

SHIRLEY_TEMPLE = (
    "Shirley Temple Black (April 23, 1928 – February 10, 2014) was an American actress, singer, "
    "dancer, businesswoman, and diplomat who was Hollywood's number one box-office draw as a child "
    "actress from 1935 to 1938. As an adult, she was named United States ambassador to Ghana and to "
    "Czechoslovakia and also served as Chief of Protocol of the United States."
)
LUIGI_ROSSI = (
    "Luigi Rossi (c. 1597 – 20 February 1653) was an Italian Baroque composer. Rossi was born in "
    "Torremaggiore, a small town near Foggia, in the ancient kingdom of Naples and at an early age he "
    "went to Naples. There he studied music with the Franco-Flemish composer Jean de Macque who was "
    "organist of the Santa Casa dell’Annunziata and \"maestro di cappella\" to the Spanish viceroy. "
    "Rossi later entered the service of the Caetani, dukes of Traetta."
)
ARILD_NYQUIST = (
    "Arild Nyquist (6 March 1937 – 21 December 2004) was a Norwegian novelist, poet, writer of "
    "children's books and musician. He was born in Oslo, the son of Gerd Nyquist. His father-in-law "
    "was Olav Mosebekk. He made his literary debut in 1963 with the novel \"Ringer i et sommervann\"."
)
CHRISTIANITY_TODAY = (
    "Christianity Today magazine is an evangelical Christian periodical that was founded in 1956 and "
    "is based in Carol Stream, Illinois. \" The Washington Post\" calls \"Christianity Today,\" "
    "\"evangelicalism’s flagship magazine\"; \"The New York Times\" describes it as a \"mainstream "
    "evangelical magazine.\""
)
GRENNASKOLAN = (
    "Grennaskolan Boarding School is a Swedish boarding school located in Gränna, Jönköping County. "
    "Grennaskolan Boarding School was founded in 1963 by Stockholm University and has today "
    "approximately 200 students, half of whom are boarding school students and half of whom are "
    "international students."
)
WILLOUGHTON = (
    "Willoughton is a village and civil parish in the West Lindsey district of Lincolnshire, England. "
    "It is situated 2 mi west from the A15 road, 13 mi north from Lincoln and 3 mi south from Kirton "
    "Lindsey. According to the 2001 Census the village had a population of 330, increasing to 341 at "
    "the 2011 census."
)
MEET_CORLISS_ARCHER = (
    "Meet Corliss Archer, a program from radio's Golden Age, ran from January 7, 1943 to September 30, "
    "1956. Although it was CBS's answer to NBC's popular \"A Date with Judy\", it was also broadcast by "
    "NBC in 1948 as a summer replacement for \"The Bob Hope Show\". From October 3, 1952 to June 26, "
    "1953, it aired on ABC, finally returning to CBS. Despite the program's long run, fewer than 24 "
    "episodes are known to exist."
)
PARAGRAPHS = [
    SHIRLEY_TEMPLE,
    LUIGI_ROSSI,
    ARILD_NYQUIST,
    CHRISTIANITY_TODAY,
    GRENNASKOLAN,
    WILLOUGHTON,
    MEET_CORLISS_ARCHER,
]
LONG_TEXT = "\n\n".join(PARAGRAPHS)

SMALL_CHUNK_TOKENS = 64
SMALL_OVERLAP_TOKENS = 16


@pytest.fixture(scope="module")
def analyzer() -> DocumentAnalyzer:
    return DocumentAnalyzer()


@pytest.fixture(scope="module")
def small_analyzer() -> DocumentAnalyzer:
    return DocumentAnalyzer(chunk_tokens=SMALL_CHUNK_TOKENS, overlap_tokens=SMALL_OVERLAP_TOKENS, max_segment_chars=600)


def make_document(title: str, text: str, doc_id: str = "doc") -> Document:
    return Document(doc_id=doc_id, title=title, text=text, source="test")


def attributes_by_name(analysis, attribute: str) -> list:
    return [record for record in analysis.attributes if record.attribute == attribute]


def uncovered_characters(text: str, spans: list[tuple[int, int]]) -> list[int]:
    covered = bytearray(len(text))
    for start, end in spans:
        covered[start:end] = b"\x01" * (end - start)
    return [index for index, character in enumerate(text) if not character.isspace() and not covered[index]]


# Segments


def test_segments_split_at_blank_lines():
    segments = split_segments(LONG_TEXT, 100_000)
    assert len(segments) == len(PARAGRAPHS)
    assert [LONG_TEXT[segment.start : segment.end] for segment in segments] == PARAGRAPHS


def test_segments_cut_long_paragraph():
    text = " ".join(PARAGRAPHS) * 3
    segments = split_segments(text, 500)
    assert all(segment.end - segment.start <= 500 for segment in segments)
    assert uncovered_characters(text, [(segment.start, segment.end) for segment in segments]) == []
    # Sentence ends are preferred over spaces.
    assert sum(text[segment.end - 1] == "." for segment in segments) > len(segments) // 2


def test_segments_hard_cut_without_spaces():
    text = "x" * 2_500
    segments = split_segments(text, 1_000)
    assert [(segment.start, segment.end) for segment in segments] == [(0, 1_000), (1_000, 2_000), (2_000, 2_500)]


def test_segments_keep_tables_apart():
    text = "Revenue by year:\n| Year | Revenue |\n| --- | --- |\n| 2019 | 1,234 |\nTotals follow."
    segments = split_segments(text, 100_000)
    pieces = [(text[segment.start : segment.end], segment.is_table) for segment in segments]
    assert pieces == [
        ("Revenue by year:", False),
        ("| Year | Revenue |\n| --- | --- |\n| 2019 | 1,234 |", True),
        ("Totals follow.", False),
    ]


def test_title_name_and_head():
    assert title_name("Theodred II (Bishop of Elmham)") == "Theodred II"
    assert title_name("Shirley Temple") == "Shirley Temple"
    assert title_head("Boston, Lincolnshire") == "Boston"
    assert title_head("Crosby, Stills, Nash & Young") is None
    assert title_head("Earth, Wind & Fire") is None
    assert title_head("Shirley Temple") is None


# Chunks


def test_chunks_cover_text_within_bound(small_analyzer):
    analysis = small_analyzer.analyze(make_document("Mixed", LONG_TEXT))
    chunks = analysis.chunks
    assert len(chunks) > 5
    assert uncovered_characters(LONG_TEXT, [(chunk.start, chunk.end) for chunk in chunks]) == []
    for chunk in chunks:
        assert chunk.text == LONG_TEXT[chunk.start : chunk.end]
        assert chunk.n_tokens <= SMALL_CHUNK_TOKENS
        assert count_tokens([chunk.text])[0] == chunk.n_tokens
    assert [chunk.ordinal for chunk in chunks] == list(range(len(chunks)))
    assert [chunk.chunk_id for chunk in chunks] == [f"doc#c{ordinal}" for ordinal in range(len(chunks))]


def test_chunks_overlap_by_sentences(small_analyzer):
    chunks = small_analyzer.analyze(make_document("Mixed", LONG_TEXT)).chunks
    overlaps = [
        LONG_TEXT[following.start : previous.end]
        for previous, following in zip(chunks, chunks[1:])
        if following.start < previous.end
    ]
    assert overlaps, "expected at least one pair of overlapping chunks"
    for overlap in overlaps:
        assert count_tokens([overlap])[0] <= SMALL_OVERLAP_TOKENS
    for previous, following in zip(chunks, chunks[1:]):
        assert following.start > previous.start
        assert following.end > previous.end


def test_chunk_ids_stable_across_runs(small_analyzer):
    first = small_analyzer.analyze(make_document("Mixed", LONG_TEXT))
    second = small_analyzer.analyze(make_document("Mixed", LONG_TEXT))
    assert [chunk.chunk_id for chunk in first.chunks] == [chunk.chunk_id for chunk in second.chunks]
    assert first == second


def test_short_document_one_chunk(analyzer):
    analysis = analyzer.analyze(make_document("Shirley Temple", SHIRLEY_TEMPLE, doc_id="86a45d5d6e831fbf"))
    assert len(analysis.chunks) == 1
    chunk = analysis.chunks[0]
    assert chunk.chunk_id == "86a45d5d6e831fbf#c0"
    assert chunk.text == SHIRLEY_TEMPLE
    assert (chunk.start, chunk.end) == (0, len(SHIRLEY_TEMPLE))


@pytest.mark.parametrize("text", ["", "   \n\n \t "])
def test_empty_text_no_chunks(analyzer, text):
    analysis = analyzer.analyze(make_document("Empty", text))
    assert analysis.chunks == []
    assert analysis.mentions == []
    assert analysis.relations == []
    assert analysis.attributes == []
    assert analysis.entity_names == {}


def test_long_sentence_split_within_bound(small_analyzer):
    names = ["Shirley Temple Black", "Ghana", "Czechoslovakia", "Luigi Rossi", "Torremaggiore", "Foggia"]
    text = "The places and people were " + ", ".join(names * 20) + "."
    analysis = small_analyzer.analyze(make_document("List", text))
    assert count_tokens([text])[0] > SMALL_CHUNK_TOKENS * 3
    assert len(analysis.chunks) >= 3
    assert uncovered_characters(text, [(chunk.start, chunk.end) for chunk in analysis.chunks]) == []
    for chunk in analysis.chunks:
        assert count_tokens([chunk.text])[0] <= SMALL_CHUNK_TOKENS


def test_table_chunked_by_whole_rows(small_analyzer):
    rows = ["| Year | Revenue | Net income | Employees |", "| --- | --- | --- | --- |"]
    rows += [f"| {year} | {1_000 + 37 * year % 500:,} | {120 + year % 40} | {2_000 + year % 300} |" for year in range(1980, 2020)]
    text = "Results of the company by year.\n\n" + "\n".join(rows)
    table_start = text.index("| Year")
    analysis = small_analyzer.analyze(make_document("Results", text))
    row_spans = []
    position = table_start
    for row in rows:
        row_spans.append((position, position + len(row)))
        position += len(row) + 1
    row_starts = {start for start, _ in row_spans}
    row_ends = {end for _, end in row_spans}

    table_chunks = [chunk for chunk in analysis.chunks if chunk.end > table_start]
    assert len(table_chunks) > 2
    seen_rows: list[tuple[int, int]] = []
    for chunk in table_chunks:
        assert chunk.n_tokens <= SMALL_CHUNK_TOKENS
        assert chunk.end in row_ends
        if chunk.start >= table_start:
            assert chunk.start in row_starts
        seen_rows += [span for span in row_spans if chunk.start <= span[0] and span[1] <= chunk.end]
    assert sorted(seen_rows) == row_spans  # every row once, none repeated


def test_small_segments_keep_offsets(small_analyzer):
    analysis = small_analyzer.analyze(make_document("Mixed", LONG_TEXT))
    assert analysis.mentions
    for mention in analysis.mentions:
        assert LONG_TEXT[mention.start : mention.end] == mention.surface
        chunk = next(chunk for chunk in analysis.chunks if chunk.chunk_id == mention.chunk_id)
        assert chunk.start <= mention.start


@pytest.mark.slow
def test_two_million_characters(analyzer):
    blocks = []
    size = 0
    index = 0
    while size < 2_000_000:
        paragraph = PARAGRAPHS[index % len(PARAGRAPHS)]
        # Every fifth block joins paragraphs without blank lines, so segments must be cut.
        block = " ".join([paragraph] * 40) if index % 5 == 0 else paragraph
        blocks.append(block)
        size += len(block) + 2
        index += 1
    text = "\n\n".join(blocks)[:2_000_000]
    assert len(text) > 2 * 1_000_000 - 1  # beyond spaCy's default max_length of 1,000,000

    analysis = analyzer.analyze(make_document("Shirley Temple", text, doc_id="big"))
    assert analysis.chunks
    assert max(chunk.n_tokens for chunk in analysis.chunks) <= 200
    assert uncovered_characters(text, [(chunk.start, chunk.end) for chunk in analysis.chunks]) == []
    assert all(text[mention.start : mention.end] == mention.surface for mention in analysis.mentions)
    assert any(record.attribute == "birth_date" for record in analysis.attributes)


# Entities and mentions


def test_entities_with_normalised_keys(analyzer):
    analysis = analyzer.analyze(make_document("Shirley Temple", SHIRLEY_TEMPLE))
    keys = {mention.entity_key for mention in analysis.mentions}
    assert {"ghana", "czechoslovakia", "united states"} <= keys
    # "United States" and "the United States" are one entity.
    surfaces = {mention.surface for mention in analysis.mentions if mention.entity_key == "united states"}
    assert surfaces == {"United States", "the United States"}
    assert analysis.entity_names["ghana"] == ("Ghana", "GPE")
    for mention in analysis.mentions:
        assert mention.entity_key == entity_key(mention.entity_key)
        assert mention.label not in {"DATE", "CARDINAL", "ORDINAL", "QUANTITY", "PERCENT", "MONEY", "TIME"}


def test_title_entity_without_parenthetical(analyzer):
    text = "Theodred II was a medieval Bishop of Elmham. The date of Theodred's consecration unknown."
    analysis = analyzer.analyze(make_document("Theodred II (Bishop of Elmham)", text))
    assert analysis.entity_names["theodred ii"] == ("Theodred II (Bishop of Elmham)", "TITLE")
    title_mentions = [mention for mention in analysis.mentions if mention.entity_key == "theodred ii"]
    assert title_mentions[0].surface == "Theodred II"
    assert title_mentions[0].label == "TITLE"
    assert (title_mentions[0].start, title_mentions[0].end) == (0, len("Theodred II"))


def test_title_entity_listed_without_mention(analyzer):
    analysis = analyzer.analyze(make_document("Meet Corliss Archer (radio)", "The program ran on CBS."))
    assert analysis.entity_names["meet corliss archer"] == ("Meet Corliss Archer (radio)", "TITLE")


def test_alias_merges_surname_into_title(analyzer):
    analysis = analyzer.analyze(make_document("Luigi Rossi", LUIGI_ROSSI))
    rossi = [mention for mention in analysis.mentions if mention.surface == "Rossi"]
    assert len(rossi) == 2
    assert {mention.entity_key for mention in rossi} == {"luigi rossi"}
    assert "rossi" not in analysis.entity_names


def test_alias_merges_longer_name_into_title(analyzer):
    analysis = analyzer.analyze(make_document("Shirley Temple", SHIRLEY_TEMPLE))
    person = next(mention for mention in analysis.mentions if mention.surface == "Shirley Temple Black")
    assert person.entity_key == "shirley temple"
    assert analysis.entity_names["shirley temple"] == ("Shirley Temple", "TITLE")


def test_alias_first_sentence_full_name(analyzer):
    analysis = analyzer.analyze(make_document("Grennaskolan", GRENNASKOLAN))
    keys = {mention.entity_key for mention in analysis.mentions if mention.surface == "Grennaskolan Boarding School"}
    assert keys == {"grennaskolan"}


def test_resolve_aliases_rules():
    names = [
        ("shirley temple black", "PERSON"),
        ("temple", "PERSON"),
        ("temple", "ORG"),
        ("john", "PERSON"),
        ("john smith", "PERSON"),
        ("john doe", "PERSON"),
        ("boston", "GPE"),
    ]
    aliases = resolve_aliases(names, "shirley temple", title_head_key="boston")
    assert aliases[("shirley temple black", "PERSON")] == "shirley temple"
    assert aliases[("temple", "PERSON")] == "shirley temple"
    assert ("temple", "ORG") not in aliases  # only person-like labels merge by subset
    assert ("john", "PERSON") not in aliases  # ambiguous between two longer names
    assert aliases[("boston", "GPE")] == "shirley temple"


# Relations


def test_relation_label_from_verb_and_preposition(analyzer):
    analysis = analyzer.analyze(make_document("Shirley Temple", SHIRLEY_TEMPLE))
    labels = {(relation.source_key, relation.target_key): relation.label for relation in analysis.relations}
    assert labels[("ghana", "czechoslovakia")] == "name to"
    assert labels[("united states", "ghana")] == "to"
    chunk_ids = {chunk.chunk_id for chunk in analysis.chunks}
    for relation in analysis.relations:
        assert relation.chunk_id in chunk_ids
        assert relation.source_key != relation.target_key


def test_relation_born_in(analyzer):
    analysis = analyzer.analyze(make_document("Luigi Rossi", LUIGI_ROSSI))
    relation = next(
        relation
        for relation in analysis.relations
        if (relation.source_key, relation.target_key) == ("luigi rossi", "torremaggiore")
    )
    assert relation.label == "bear in"
    assert relation.sentence.startswith("Rossi was born in Torremaggiore")


def test_relations_once_per_pair_and_sentence(analyzer):
    analysis = analyzer.analyze(make_document("Shirley Temple", SHIRLEY_TEMPLE))
    occurrences = [(relation.sentence, frozenset((relation.source_key, relation.target_key))) for relation in analysis.relations]
    assert len(occurrences) == len(set(occurrences))


# Attributes


def test_life_dates_and_nationality(analyzer):
    analysis = analyzer.analyze(make_document("Shirley Temple", SHIRLEY_TEMPLE))
    birth = attributes_by_name(analysis, "birth_date")
    death = attributes_by_name(analysis, "death_date")
    nationality = attributes_by_name(analysis, "nationality")
    types = attributes_by_name(analysis, "type")
    assert [(record.entity_key, record.date, record.value) for record in birth] == [("shirley temple", "1928-04-23", "April 23, 1928")]
    assert [(record.entity_key, record.date) for record in death] == [("shirley temple", "2014-02-10")]
    assert [(record.entity_key, record.value) for record in nationality] == [("shirley temple", "American")]
    assert "actress" in {record.value for record in types}
    assert birth[0].entity_name == "Shirley Temple"
    assert birth[0].value_type == "date"
    assert birth[0].chunk_id == analysis.chunks[0].chunk_id
    assert birth[0].sentence.startswith("Shirley Temple Black (April 23, 1928")


def test_life_span_of_org_tagged_person(analyzer):
    analysis = analyzer.analyze(make_document("Arild Nyquist", ARILD_NYQUIST))
    dates = {(record.attribute, record.date) for record in analysis.attributes if record.value_type == "date"}
    assert ("birth_date", "1937-03-06") in dates
    assert ("death_date", "2004-12-21") in dates
    places = {(record.attribute, record.value) for record in analysis.attributes if record.value_type == "place"}
    assert ("birth_place", "Oslo") in places


def test_life_span_approximate_year(analyzer):
    analysis = analyzer.analyze(make_document("Luigi Rossi", LUIGI_ROSSI))
    dates = {(record.attribute, record.date) for record in analysis.attributes if record.entity_key == "luigi rossi"}
    assert ("birth_date", "1597") in dates
    assert ("death_date", "1653-02-20") in dates


def test_period_of_work_is_not_life_span(analyzer):
    text = "Arthur's Magazine (1844–1846) was an American literary periodical published in Philadelphia in the 19th century."
    analysis = analyzer.analyze(make_document("Arthur's Magazine", text))
    assert attributes_by_name(analysis, "birth_date") == []
    assert [record.value for record in attributes_by_name(analysis, "type")] == ["periodical"]


def test_founded_and_location(analyzer):
    analysis = analyzer.analyze(make_document("Christianity Today", CHRISTIANITY_TODAY))
    founded = attributes_by_name(analysis, "founded")
    location = attributes_by_name(analysis, "location")
    assert [(record.entity_key, record.date) for record in founded] == [("christianity today", "1956")]
    assert [(record.entity_key, record.value, record.value_type) for record in location] == [
        ("christianity today", "Carol Stream", "place")
    ]


def test_founded_and_location_first_sentence_name(analyzer):
    analysis = analyzer.analyze(make_document("Grennaskolan", GRENNASKOLAN))
    facts = {(record.entity_key, record.attribute): record for record in analysis.attributes}
    assert facts[("grennaskolan", "founded")].date == "1963"
    assert facts[("grennaskolan", "location")].value == "Gränna"
    assert facts[("grennaskolan", "nationality")].value == "Swedish"


def test_population_number(analyzer):
    analysis = analyzer.analyze(make_document("Willoughton", WILLOUGHTON))
    population = attributes_by_name(analysis, "population")
    assert [(record.entity_key, record.number, record.unit) for record in population] == [("willoughton", 330.0, None)]
    assert population[0].value_type == "number"


def test_number_with_unit_and_dimension(analyzer):
    text = "Lake Baikal is a rift lake in Russia. The lake is 1,642 m deep. Its area is 31,722 km2. The Selenga is 1,024 km long."
    analysis = analyzer.analyze(make_document("Lake Baikal", text))
    numbers = {
        (record.entity_key, record.attribute): (record.number, record.unit)
        for record in analysis.attributes
        if record.value_type == "number"
    }
    # "The lake" is the title entity because its type is "lake".
    assert numbers[("lake baikal", "depth")] == (1642.0, "m")
    assert numbers[("lake baikal", "area")] == (31722.0, "km2")
    assert numbers[(entity_key("Selenga"), "length")] == (1024.0, "km")


def test_analyze_many_matches_analyze(analyzer):
    documents = [make_document(title, text, doc_id=f"d{index}") for index, (title, text) in enumerate(
        [("Shirley Temple", SHIRLEY_TEMPLE), ("Empty", ""), ("Luigi Rossi", LUIGI_ROSSI)]
    )]
    batch = analyzer.analyze_many(documents)
    assert [analysis.doc_id for analysis in batch] == ["d0", "d1", "d2"]
    assert batch == [analyzer.analyze(document) for document in documents]


# Parsing helpers


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("April 23, 1928", "1928-04-23"),
        ("23 April 1928", "1928-04-23"),
        ("April 1928", "1928-04"),
        ("in 1928", "1928"),
        ("c. 870", "0870"),
        ("Sept. 5, 2001", "2001-09-05"),
        ("2014-02-10", "2014-02-10"),
        ("the 1990s", None),
        ("500 BC", None),
        ("February 30, 2001", None),
        ("no date here", None),
    ],
)
def test_parse_date(text, expected):
    parsed = parse_date(text)
    assert (parsed[0] if parsed else None) == expected


@pytest.mark.parametrize(
    ("text", "label", "expected"),
    [
        ("12,345", "CARDINAL", (12345.0, None)),
        ("$5.2 billion", "MONEY", (5.2e9, "$")),
        ("£2bn", "MONEY", (2e9, "£")),
        ("40 million euros", "MONEY", (4e7, "euros")),
        ("6,650 km", "QUANTITY", (6650.0, "km")),
        ("87.96%", "PERCENT", (87.96, "%")),
        ("twenty-five", "CARDINAL", (25.0, None)),
        ("5–10 km", "QUANTITY", (5.0, "km")),
        ("several", "CARDINAL", None),
    ],
)
def test_parse_number(text, label, expected):
    assert parse_number(text, label) == expected


def test_invalid_options_rejected():
    with pytest.raises(ValueError, match="chunk_tokens"):
        DocumentAnalyzer(chunk_tokens=300)
    with pytest.raises(ValueError, match="overlap_tokens"):
        DocumentAnalyzer(chunk_tokens=100, overlap_tokens=100)


# Throughput on real data


@pytest.mark.slow
def test_hotpotqa_throughput(analyzer, shared_data):
    paragraphs: dict[str, dict] = {}
    with open(shared_data / "hotpotqa-dev.jsonl", encoding="utf-8") as handle:
        for line in handle:
            for paragraph in json.loads(line)["paragraphs"]:
                paragraphs.setdefault(paragraph["pid"], paragraph)
            if len(paragraphs) >= 1_000:
                break
    documents = [make_document(item["title"], item["text"], doc_id=item["pid"]) for item in list(paragraphs.values())[:1_000]]

    started = time.perf_counter()
    analyses = analyzer.analyze_many(documents)
    elapsed = time.perf_counter() - started
    print(f"\nanalysed {len(documents)} HotpotQA paragraphs in {elapsed:.1f} s: {len(documents) / elapsed:.1f} paragraphs/s")

    assert len(analyses) == len(documents)
    assert all(analysis.chunks for analysis in analyses)
    assert all(chunk.n_tokens <= 200 for analysis in analyses for chunk in analysis.chunks)
