"""The word lists the sanitizer decides with. A member whose name is also a common word ("Bill", "Rose", "Mai") is
recognised only where the word is written as a name; these lists say what is common and what around a word makes
it a word rather than a name. Common = the small lists below (English, German, a little French) plus every word of
the household-task catalog (`app/data/catalog.csv`), so no catalog title can ever lose a word to a name."""

from __future__ import annotations

import csv
import re
from pathlib import Path


def word_set(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Given names (and surnames) that are also English or German words.
NAME_WORDS = word_set("""
bill mark rose will grace max frank hope pat june may art joy summer dawn faith ruby iris holly ivy daisy lily eve
robin jack sue rob don ray dean chase hunter sky river august april autumn winter spring star rich reed miles grant
penny sandy rusty cliff dale glen drew guy herb amber pearl olive basil sage heather jasmine violet poppy hazel
crystal destiny harmony melody charity patience prudence mercy honor honour constance verity victor earl duke king
prince baron major noble sterling angel honey candy ginger pepper cherry berry apple coco kitty nick rocky buck hawk
fox wolf bear bunny jean dick peg pip gene lance miles wade wren brook clay heath dusty misty sunny happy storm
rain page carter cook baker mason taylor bishop hill wood stone young green white black brown gray grey bell hall
park marsh field bush bird crane swan lamb fisher walker turner porter shepherd gardener sawyer cooper
ernst till mai sonne sommer engel stern heide kiefer fink fuchs hase rosa frieda koch bauer richter klein schwarz
braun lange lang jung hahn vogel keller berger stein graf horn kaiser jäger gross groß weiß weiss kern busch kühn
pierre blanche aimé constant désiré félicité marguerite violette clément prudent
""")

# Closed-class words: never names at the start of a sentence ("My keys", "An apple").
FUNCTION_WORDS = word_set("""
a an the and or but if so as at by in on of to up out off is am are be was were do did has had have i me my we us
our you your he him his she her it its they them their this that these those no not yes all any some each every
which what who whom whose when where why how there here than then too very just also only still can could would
should shall must might
der die das den dem des ein eine einen einem einer eines und oder aber wenn so als an am im in um zu zum zur vom
beim ins auf aus bei mit nach von vor für über unter ist sind bin bist war du er sie es wir ihr mein dein sein
kein nicht ja nein auch noch doch mal
le la les un une du de des et ou mais si au aux en je tu il elle nous vous ils elles mon ma ton ta son sa ce cet
cette ces y el los las al con por para
""")

# Determiners (and prepositions merged with one): a capitalized word right after one is a noun, not a name
# ("the Bill", "Die Rose", "im Mai").
DETERMINERS = word_set("""
the a an this that these those my your his her its our their every each no any some another which what whose
der die das den dem des ein eine einen einem einer eines kein keine keinen keinem keiner mein meine meinen meinem
meiner dein deine sein seine ihr ihre unser unsere euer eure jeder jede jedes diese dieser dieses diesen im am vom
zum zur beim ins
le la les un une du ce cet cette ces mon ma mes ton ta tes son sa ses notre nos votre vos leur leurs au aux
""")

# After a sentence-initial word, these make it a verb or an auxiliary: "Mark the calendar", "Will it rain?".
FOLLOWERS = DETERMINERS | word_set("""
it i you we they he she me us them him there here up down out off over away back sure not also still all both
ich du er sie es wir ihr man mal nicht auch noch je tu il elle on nous vous ils elles
""")

# Months and seasons that are names (May, June, August, Summer...): words next to a day or after "in".
TIME_WORDS = word_set("""
january february march april may june july august september october november december spring summer autumn fall
winter januar februar märz mai juni juli oktober dezember frühling sommer herbst janvier février mars avril juin
juillet août été automne hiver
""")
TIME_PREPOSITIONS = word_set("""
in on by until till from since during over next last this every early late mid end of before after through
im am bis seit ab ende anfang mitte nächsten letzten diesen jeden vor nach en au début fin depuis
""")

# Words after a number that make it a quantity, not a house number or a phone number.
UNITS = word_set("""
x times time mal fois veces volte stück stk pcs pc pieces piece items item pairs pair packs pack boxes box bags
bottles cans rolls kg g mg l ml cl dl cm mm m km ft lb lbs oz h hr hrs hours hour min mins minutes minute sec
seconds days day weeks week months month years year tage tag wochen woche monate jahre jahr stunden stunde minuten
uhr o'clock steps schritte points punkte grains calories kcal w kw kwh v mah gb mb tb px dpi rpm %
eur euro euros € usd $ gbp £ chf people persons personen kids children kinder dogs cats plants
""")


def _catalog_words() -> frozenset[str]:
    path = Path(__file__).resolve().parents[2] / "data" / "catalog.csv"
    with path.open(encoding="utf-8") as f:
        titles = [row["title"] for row in csv.DictReader(f)]
    return frozenset(w.casefold() for t in titles for w in re.findall(r"[^\W\d_]+", t))


CATALOG_WORDS = _catalog_words()
COMMON_WORDS = NAME_WORDS | FUNCTION_WORDS | CATALOG_WORDS | TIME_WORDS
