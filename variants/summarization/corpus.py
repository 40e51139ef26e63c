"""Documents and questions for `abtest demo`: public-domain text only.

Lincoln's Gettysburg Address (1863) and the opening of the Declaration of Independence (1776)
are in the public domain. The transit report is `variants.summarization.pdfs.SAMPLE_REPORT`;
the soil study and the library notice were written for this project and are dedicated to
the public domain (CC0).
Each document is a tuple of pages, each page a tuple of paragraphs, as `make_pdf` takes them.
"""

from __future__ import annotations

from dataclasses import dataclass

from variants.summarization.pdfs import SAMPLE_REPORT

Pages = tuple[tuple[str, ...], ...]

GETTYSBURG: Pages = (
    (
        "Address delivered at the dedication of the cemetery at Gettysburg, November 19, 1863.",
        "Four score and seven years ago our fathers brought forth on this continent, a new "
        "nation, conceived in Liberty, and dedicated to the proposition that all men are "
        "created equal.",
        "Now we are engaged in a great civil war, testing whether that nation, or any nation so "
        "conceived and so dedicated, can long endure. We are met on a great battle-field of that "
        "war. We have come to dedicate a portion of that field, as a final resting place for "
        "those who here gave their lives that that nation might live. It is altogether fitting "
        "and proper that we should do this.",
    ),
    (
        "But, in a larger sense, we can not dedicate, we can not consecrate, we can not hallow "
        "this ground. The brave men, living and dead, who struggled here, have consecrated it, "
        "far above our poor power to add or detract. The world will little note, nor long "
        "remember what we say here, but it can never forget what they did here.",
        "It is for us the living, rather, to be dedicated here to the unfinished work which they "
        "who fought here have thus far so nobly advanced. It is rather for us to be here "
        "dedicated to the great task remaining before us, that from these honored dead we take "
        "increased devotion to that cause for which they gave the last full measure of "
        "devotion, that we here highly resolve that these dead shall not have died in vain, "
        "that this nation, under God, shall have a new birth of freedom, and that government of "
        "the people, by the people, for the people, shall not perish from the earth.",
    ),
)

DECLARATION: Pages = (
    (
        "In Congress, July 4, 1776. The unanimous Declaration of the thirteen united States of "
        "America.",
        "When in the Course of human events, it becomes necessary for one people to dissolve the "
        "political bands which have connected them with another, and to assume among the powers "
        "of the earth, the separate and equal station to which the Laws of Nature and of "
        "Nature's God entitle them, a decent respect to the opinions of mankind requires that "
        "they should declare the causes which impel them to the separation.",
    ),
    (
        "We hold these truths to be self-evident, that all men are created equal, that they are "
        "endowed by their Creator with certain unalienable Rights, that among these are Life, "
        "Liberty and the pursuit of Happiness. That to secure these rights, Governments are "
        "instituted among Men, deriving their just powers from the consent of the governed. "
        "That whenever any Form of Government becomes destructive of these ends, it is the "
        "Right of the People to alter or to abolish it, and to institute new Government.",
        "Prudence, indeed, will dictate that Governments long established should not be changed "
        "for light and transient causes; and accordingly all experience hath shewn, that "
        "mankind are more disposed to suffer, while evils are sufferable, than to right "
        "themselves by abolishing the forms to which they are accustomed.",
    ),
)

SOIL_STUDY: Pages = (
    (
        "Soil Moisture Field Study, Season Summary.",
        "The study compared three irrigation schedules on twelve plots of winter wheat. "
        "Plots were watered daily, every third day, or only when sensors read below twenty "
        "percent moisture. Each schedule was applied to four plots chosen at random. "
        "Sensors logged moisture at ten and thirty centimetres every hour.",
        "The sensor-driven schedule used the least water, about thirty one percent less than "
        "daily watering. Every-third-day watering used eighteen percent less than daily "
        "watering. Rainfall in April was twice the seasonal average, which reduced demand on "
        "all plots.",
    ),
    (
        "Grain yield was highest on the every-third-day plots at six point two tonnes per "
        "hectare. Daily watering yielded five point nine tonnes and the sensor schedule five "
        "point eight tonnes. The differences in yield were within the plot-to-plot variation "
        "and are not conclusive.",
        "Root depth was greatest under the sensor schedule, reaching seventy centimetres. "
        "Shallow roots on the daily plots made them more sensitive to the dry spell in June. "
        "Two sensors failed in May and were replaced within a week.",
    ),
    (
        "The team recommends the sensor-driven schedule for next season because it saves water "
        "without a clear loss of yield. The cost of sensors was four hundred dollars per plot. "
        "Water savings would repay the sensors in about two seasons at current prices. "
        "A larger trial with twenty four plots is planned to measure yield more precisely.",
    ),
)

LIBRARY_NOTICE: Pages = (
    (
        "Eastfield Public Library: Changes to Opening Hours and Services.",
        "From the first of September the library will open at nine in the morning on weekdays "
        "instead of ten. Evening hours on Thursdays will extend to eight in the evening. "
        "The library will close on Sundays during the summer months only.",
        "Borrowing limits rise from ten to fifteen items per card. Loan periods stay at three "
        "weeks for books and one week for films. Late fees for children's books are abolished. "
        "Adult late fees remain at twenty cents per day, capped at five dollars per item.",
    ),
    (
        "The study rooms on the second floor can now be booked online up to two weeks ahead. "
        "Each booking lasts at most three hours. The makerspace reopens after renovation with "
        "two new 3D printers and a laser cutter, available after a short safety course.",
        "The changes follow a survey of eight hundred residents in the spring. Most respondents "
        "asked for earlier opening and more study space. The library board approved the new "
        "hours in July with a budget increase of six percent.",
    ),
)


@dataclass(frozen=True)
class DemoDocument:
    """A document the demo turns into a PDF, with questions a user might ask about it."""

    name: str
    pages: Pages
    queries: tuple[str, ...]


DOCUMENTS: tuple[DemoDocument, ...] = (
    DemoDocument(
        "transit-report",
        SAMPLE_REPORT,
        (
            "What did the pilot cost and was it over budget?",
            "How did ridership change during the pilot?",
            "What happened to bus punctuality?",
        ),
    ),
    DemoDocument(
        "gettysburg-address",
        GETTYSBURG,
        (
            "What does the speaker ask the living to do?",
            "Why can the ground not be consecrated by the speakers?",
        ),
    ),
    DemoDocument(
        "declaration",
        DECLARATION,
        (
            "Which rights are called unalienable?",
            "When may people alter or abolish a government?",
        ),
    ),
    DemoDocument(
        "soil-study",
        SOIL_STUDY,
        (
            "Which irrigation schedule saved the most water?",
            "How did grain yield differ between schedules?",
            "What does the team recommend for next season?",
        ),
    ),
    DemoDocument(
        "library-notice",
        LIBRARY_NOTICE,
        (
            "What are the new opening hours?",
            "What changes for late fees and borrowing limits?",
        ),
    ),
)
