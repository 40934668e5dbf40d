#!/usr/bin/env python3
"""Regenerate the offline demo corpus ``data/demo/`` from openly licensed Debian packages.

Sources (install with ``apt-get install openclipart-png openclipart-svg tuxpaint-stamps-default``):

* ``openclipart-png``: public-domain clip art (the PNG renderings that are converted here);
* ``openclipart-svg``: the same drawings as SVG, read only for their embedded metadata (title,
  description, keywords, creator, licence), which becomes the caption;
* ``tuxpaint-stamps-default``: Tux Paint stamps (GPL-2+), captioned by the English line of each
  stamp's ``.txt`` description.

What it does, deterministically:

1. builds a caption for every PNG in the packages from the real metadata (nothing invented);
2. runs the keyword search that ``curate``'s ``local`` source runs (whole words, case-insensitive,
   caption words plus file-name words, regular plurals match) for every lemma of every demo class;
3. drops byte-identical copies (the clip-art package ships some drawings in several folders),
   keeping the first path in sorted order;
4. checks that the hits are exactly the images in ``LABELS``, the hand-checked table of what each
   image shows (every image was looked at; labels do not come from captions), and stops otherwise;
5. flattens each image on white, scales the longest side to at most 320 px, writes it as JPEG
   (quality 85) under ``data/demo/images/`` and writes ``data/demo/index.csv`` and
   ``data/demo/classes.csv``.

Usage::

    python scripts/build_demo_corpus.py            # (re)build data/demo
    python scripts/build_demo_corpus.py --list     # print the search hits with captions, write nothing

Run it with the project's environment (``.venv/bin/python``): it imports curate's search.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import html
import re
import sys
from pathlib import Path

from PIL import Image

from curate.sources.local import tokenize, word_forms  # the search exactly as the pipeline runs it

OCC_PNG = Path("/usr/share/openclipart/png")
OCC_SVG = Path("/usr/share/openclipart/svg")
TUX = Path("/usr/share/tuxpaint/stamps")
PACKAGES = {"occ": "openclipart-png", "tux": "tuxpaint-stamps-default"}
DEBIAN_PACKAGES = ["openclipart-png", "openclipart-svg", "tuxpaint-stamps-default"]
LICENSES = {"occ": "public-domain", "tux": "GPL-2.0-or-later"}
MAX_SIDE = 320
JPEG_QUALITY = 85
REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "data" / "demo"

# The demo classes: WordNet 3.0 noun synsets, their lemmas (the search queries) and the noise that
# the keyword search brings for them in this corpus.
CLASSES = [
    {
        "wnid": "n07739125",
        "synset": "apple.n.01",
        "lemmas": ["apple"],
        "why": "Besides the fruit, 'apple' finds things made of or named after apples: an apple pie, "
        "candied apples, an apple-juice carton with an apple printed on it, a laptop 'based in "
        "apple's mac', and Discordian emblems (the golden apple in the Sacred Chao, a grenade "
        "tagged apple).",
    },
    {
        "wnid": "n01503061",
        "synset": "bird.n.01",
        "lemmas": ["bird"],
        "why": "Tags are copied loosely: a roast turkey on a platter (food, not the animal), a bat "
        "silhouette filed with the birds, pilot's wings, a digital camera, a flower drawing and a "
        "'Linked Image Not Found' placeholder are all tagged bird, and a coin's caption mentions "
        "the loon engraved on it.",
    },
    {
        "wnid": "n02958343",
        "synset": "car.n.01",
        "lemmas": ["car", "auto", "automobile", "machine", "motorcar"],
        "why": "The lemma 'machine' hits 'machine-generated' in a bamboo drawing's description; 'car' "
        "hits car-related signs (for-sale sign, parking sign, a car-rental pictogram of people "
        "and luggage), police-car decals and an old pick-up truck tagged car.",
    },
    {
        "wnid": "n02121620",
        "synset": "cat.n.01",
        "lemmas": ["cat", "true_cat"],
        "why": "A tiger's head tagged cat is a big cat, not cat.n.01, and a cat scratching post is "
        "furniture; conversely 'Le mie tigri preferite' (my favourite tigers) shows two tabby "
        "house cats, a true positive behind a misleading caption.",
    },
    {
        "wnid": "n03046257",
        "synset": "clock.n.01",
        "lemmas": ["clock"],
        "why": "Everything about time is tagged clock: an hourglass icon, a CD player with a clock "
        "display, a lone minute hand; many true hits are near-identical clock faces that differ "
        "only in the time shown.",
    },
    {
        "wnid": "n02084071",
        "synset": "dog.n.01",
        "lemmas": ["dog", "domestic_dog", "Canis_familiaris"],
        "why": "Compound food names: hot dogs and corn dogs (file name corn_dog); a 'no dogs' sign; a "
        "browser icon whose description cites Miro's 'Dog Howling at the Moon'; and a drawing "
        "of cats and dogs together, which is both classes.",
    },
    {
        "wnid": "n11669921",
        "synset": "flower.n.01",
        "lemmas": ["flower"],
        "why": "Mostly clean, but a mushroom and a flower-bed map symbol are tagged flower, a baby "
        "bottle is filed as 'flower-pot', and a plastic flower is an artificial flower, not a "
        "plant; other hits are flowers that appear in drawings of something else.",
    },
    {
        "wnid": "n13104059",
        "synset": "tree.n.01",
        "lemmas": ["tree"],
        "why": "The tag 'tree' covers tree-related things: autumn leaves, a fern, Christmas baubles, a "
        "bow saw and a pruner, a lotus flower, 'tree view' software icons, a city skyline, and "
        "'An alien tree!' which is a bunch of rambutan fruit.",
    },
]

# Hand-checked ground truth, keyed by source image (occ: = /usr/share/openclipart/png/,
# tux: = /usr/share/tuxpaint/stamps/). Each value lists the WordNet ids of what the image shows: the
# demo class(es) it depicts (a kind of the class counts as the class), or else what it depicts.
LABELS = {
    "occ:animals/birds/acquila_architetto_franc_01.png": "n01503061",  # bird.n.01
    "occ:animals/birds/acquila_architetto_franc_02.png": "n01503061",  # bird.n.01
    "occ:animals/birds/acquila_architetto_franc_03.png": "n01503061",  # bird.n.01
    "occ:animals/birds/acquila_architetto_franc_04.png": "n01503061",  # bird.n.01
    "occ:animals/birds/aquila_frontale_architet_01.png": "n01503061",  # bird.n.01
    "occ:animals/birds/baby-tux_alex_kuehne_01.png": "n01503061",  # bird.n.01
    "occ:animals/birds/baby_tux_01.png": "n01503061",  # bird.n.01
    "occ:animals/birds/baby_tux_rory_mccann_01.png": "n01503061",  # bird.n.01
    "occ:animals/birds/bird_of_peace_mauro_oliv_01.png": "n01503061",  # bird.n.01
    "occ:animals/birds/cigni_bianchi_e_neri_arc_01.png": "n01503061",  # bird.n.01
    "occ:animals/birds/cigno_architetto_frances_01.png": "n01503061",  # bird.n.01
    "occ:animals/birds/cigno_di_notte_nella_pa_01.png": "n01503061",  # bird.n.01
    "occ:animals/birds/cigno_di_spalle_architet_01.png": "n01503061",  # bird.n.01
    "occ:animals/birds/contour_bat.png": "n02139199",  # bat.n.01
    "occ:animals/birds/cormorant-md.png": "n01503061",  # bird.n.01
    "occ:animals/birds/crow_01.png": "n01503061",  # bird.n.01
    "occ:animals/birds/dove_symbol.png": "n01503061",  # bird.n.01
    "occ:animals/birds/duck_yellow_ii_kurt_cagl_.png": "n06253690",  # message.n.01: 'Linked Image Not Found'
    "occ:animals/birds/duck_yellow_kurt_cagle_.png": "n01503061",  # bird.n.01
    "occ:animals/birds/eagle_01.png": "n01503061",  # bird.n.01
    "occ:animals/birds/emperor_penguin_ralf_ste_01.png": "n01503061",  # bird.n.01
    "occ:animals/birds/flamand_bw_jean-victor_b_01.png": "n01503061",  # bird.n.01
    "occ:animals/birds/flamand_jean-victor_bali_01.png": "n01503061",  # bird.n.01
    "occ:animals/birds/gabbiano_architetto_fran_01.png": "n01503061",  # bird.n.01
    "occ:animals/birds/gallo_di_profilo_archite_01.png": "n01503061",  # bird.n.01
    "occ:animals/birds/gufo_civetta_architetto__01.png": "n01503061",  # bird.n.01
    "occ:animals/birds/gull_marcelo_staudt_01.png": "n01503061",  # bird.n.01
    "occ:animals/birds/hen_01.png": "n01503061",  # bird.n.01
    "occ:animals/birds/jonathon_s_duck_01.png": "n01503061",  # bird.n.01
    "occ:animals/birds/manager_mimooh_01.png": "n01503061",  # bird.n.01
    "occ:animals/birds/mirjam_meijer_mirjam_mei_01.png": "n11669921",  # flower.n.01
    "occ:animals/birds/new_penguin_charles_mcco_01.png": "n01503061",  # bird.n.01
    "occ:animals/birds/ninja_tux_rory_mccann_01.png": "n01503061",  # bird.n.01
    "occ:animals/birds/owl_on_branch_ganson.png": "n01503061",  # bird.n.01
    "occ:animals/birds/pollo_architetto_frances_01.png": "n01503061",  # bird.n.01
    "occ:animals/birds/puffin-md.png": "n01503061",  # bird.n.01
    "occ:animals/birds/ralf_ark.in-berlin.de_ra_01.png": "n01503061",  # bird.n.01
    "occ:animals/birds/rooster_01.png": "n01503061",  # bird.n.01
    "occ:animals/birds/seagull_contour_nicu_buc_01.png": "n01503061",  # bird.n.01
    "occ:animals/birds/seagull_nicu_buculei_01.png": "n01503061",  # bird.n.01
    "occ:animals/birds/simbolo_egizio_architett_01.png": "n01503061",  # bird.n.01
    "occ:animals/birds/stormo_di_uccelli_archit_01.png": "n01503061",  # bird.n.01
    "occ:animals/birds/tacchino_architetto_fran_01.png": "n01503061",  # bird.n.01
    "occ:animals/birds/turkey_on_platter_01.png": "n07647731",  # turkey.n.04
    "occ:animals/birds/uccello_bianco_e_nero_ar_01.png": "n01503061",  # bird.n.01
    "occ:animals/birds/uccello_profilo_01_archi_01.png": "n01503061",  # bird.n.01
    "occ:animals/birds/uccello_profilo_02_archi_01.png": "n01503061",  # bird.n.01
    "occ:animals/birds/wing_mitchell_johnson_si_.png": "n06883073",  # insignia.n.01
    "occ:animals/cani_e_gatti_cat_and_do_01.png": "n02084071 n02121620",  # dog.n.01 cat.n.01
    "occ:animals/fish/kallisti-grenade_1_nurbl_01.png": "n03485309",  # hand_grenade.n.01
    "occ:animals/mammals/big_cats/tiger_graig_ryan_smith_-_01.png": "n02129604",  # tiger.n.02
    "occ:animals/mammals/cartoon_cat_gerald_g._01.png": "n02121620",  # cat.n.01
    "occ:animals/mammals/dog_01_drawn_with_strai_01.png": "n02084071",  # dog.n.01
    "occ:animals/mammals/dog_01_drawn_with_strai_02.png": "n02084071",  # dog.n.01
    "occ:animals/mammals/dog_02_drawn_with_strai_01.png": "n02084071",  # dog.n.01
    "occ:animals/mammals/dog_03_drawn_with_strai_01.png": "n02084071",  # dog.n.01
    "occ:animals/mammals/dog_04_drawn_with_strai_01.png": "n02084071",  # dog.n.01
    "occ:animals/mammals/dog_05_drawn_with_strai_01.png": "n02084071",  # dog.n.01
    "occ:animals/mammals/dog_06_drawn_with_strai_01.png": "n02084071",  # dog.n.01
    "occ:animals/mammals/dog_on_leash_gerald_g._01.png": "n02084071",  # dog.n.01
    "occ:animals/mammals/dog_on_leash_gerald_g._02.png": "n02084071",  # dog.n.01
    "occ:animals/mammals/dogs/beagle_copper_ganson.png": "n02084071",  # dog.n.01
    "occ:animals/mammals/dogs/black_lab_ganson.png": "n02084071",  # dog.n.01
    "occ:animals/mammals/dogs/bobi_architetto_francesc_01.png": "n02084071",  # dog.n.01
    "occ:animals/mammals/dogs/bored_dog_01.png": "n02084071",  # dog.n.01
    "occ:animals/mammals/dogs/bulldog_puppy_ganson.png": "n02084071",  # dog.n.01
    "occ:animals/mammals/dogs/dog_head_nicu_buculei_01.png": "n02084071",  # dog.n.01
    "occ:animals/mammals/dogs/dog_head_nicu_buculei_02.png": "n02084071",  # dog.n.01
    "occ:animals/mammals/horses/mechorse.png": "n03046257",  # clock.n.01: a clock under a mechanical horse
    "occ:animals/mammals/housecats/cartoon_vgcats_fanart_01.png": "n02121620",  # cat.n.01
    "occ:animals/mammals/housecats/cat_scrathing_post_benji_01.png": "n03988170",  # post.n.04
    "occ:animals/mammals/housecats/gattina_cat_architetto_f_01.png": "n02121620",  # cat.n.01
    "occ:animals/mammals/housecats/gatto_cat_architetto_fra_01.png": "n02121620",  # cat.n.01
    "occ:animals/mammals/housecats/gatto_cat_architetto_fra_02.png": "n02121620",  # cat.n.01
    "occ:animals/mammals/housecats/gatto_cat_architetto_fra_03.png": "n02121620",  # cat.n.01
    "occ:animals/mammals/housecats/gatto_cat_architetto_fra_04.png": "n02121620",  # cat.n.01
    "occ:animals/mammals/housecats/gatto_nero_architetto_fr_01.png": "n02121620",  # cat.n.01
    "occ:animals/mammals/housecats/kitten_gerald_g._01.png": "n02121620",  # cat.n.01
    "occ:animals/mammals/housecats/le_mie_tigri_preferite_a_01.png": "n02121620",  # cat.n.01: 2 tabby cats
    "occ:animals/mammals/housecats/sleeping_cat_rgolan_sup_r.png": "n02121620",  # cat.n.01
    "occ:animals/mammals/housecats/sleeping_cat_ron_golan_01.png": "n02121620",  # cat.n.01
    "occ:buildings/city_horizon_jon_phillip_01.png": "n08651735",  # skyline.n.01
    "occ:computer/hardware/laptop_01.png": "n03642806",  # laptop.n.01
    "occ:computer/icons/applications/crazymoon_renante_tomas_.png": "n07269916",  # icon.n.01: a moon icon
    "occ:computer/icons/applications/sand_glass_frederic_mose_01.png": "n04134632",  # sandglass.n.01
    "occ:computer/icons/flat-theme/action/flower.png": "n11669921",  # flower.n.01
    "occ:computer/icons/flat-theme/action/view_tree.png": "n07269916",  # icon.n.01
    "occ:computer/icons/flat-theme/applications/clock.png": "n03046257",  # clock.n.01
    "occ:computer/icons/flower_01.png": "n11669921",  # flower.n.01
    "occ:computer/icons/icons_lumen_design_studi_01.png": "n06840530",  # pictograph.n.01
    "occ:computer/icons/lemon-theme/actions/clock.png": "n03046257",  # clock.n.01
    "occ:computer/icons/lemon-theme/actions/view_tree.png": "n13104059",  # tree.n.01
    "occ:computer/icons/lemon-theme/apps/clock.png": "n03046257",  # clock.n.01
    "occ:computer/icons/lotas_yogesh_kanitkar_01.png": "n11669921",  # flower.n.01
    "occ:decorations/lightly_decorated_evergreen_01.png": "n13104059",  # tree.n.01
    "occ:decorations/sakura_01.png": "n11669921",  # flower.n.01
    "occ:decorations/sapin_01.png": "n13881644",  # star.n.05: only the star shape renders
    "occ:education/slate-apple_benji_park_01.png": "n07739125",  # apple.n.01
    "occ:electronics/macchina_fotografica_di_01.png": "n03196062",  # digital_camera.n.01
    "occ:food/apple_bitten_dan_gerhard_01.png": "n07739125",  # apple.n.01
    "occ:food/apple_with_worm_dan_gerh_01.png": "n07739125",  # apple.n.01
    "occ:food/beverages/apple_juice_box.png": "n02971356",  # carton.n.02
    "occ:food/beverages/apple_juice_box_bw.png": "n02971356",  # carton.n.02
    "occ:food/beverages/flower-pot_01.png": "n02877266",  # bottle.n.03: a baby bottle
    "occ:food/candied_apples_ganson.png": "n07600696",  # candied_apple.n.01
    "occ:food/champignon_01.png": "n12997919",  # mushroom.n.03
    "occ:food/desserts/pie_apple.png": "n07626174",  # apple_pie.n.01
    "occ:food/desserts/pie_apple_bw.png": "n07626174",  # apple_pie.n.01
    "occ:food/fruit/an_apple_01.png": "n07739125",  # apple.n.01
    "occ:food/fruit/another_apple_01.png": "n07739125",  # apple.n.01
    "occ:food/fruit/apple.png": "n07739125",  # apple.n.01
    "occ:food/fruit/apple_bw.png": "n07739125",  # apple.n.01
    "occ:food/fruit/apple_core_01.png": "n07739125",  # apple.n.01
    "occ:food/fruit/apple_martin_schmidt-li_01r.png": "n07739125",  # apple.n.01
    "occ:food/fruit/apple_mateya_01.png": "n07739125",  # apple.n.01
    "occ:food/fruit/apple_wedge.png": "n07739125",  # apple.n.01
    "occ:food/fruit/apple_wedge_bw.png": "n07739125",  # apple.n.01
    "occ:food/fruit/applf.png": "n07739125",  # apple.n.01
    "occ:food/fruit/cartoon_apple_k_yager_01.png": "n07739125",  # apple.n.01
    "occ:food/fruit/eris_apple_nurbldoff_01.png": "n07739125",  # apple.n.01
    "occ:food/fruit/tree_whit_fruits_01.png": "n13104059",  # tree.n.01
    "occ:food/meats_and_eggs/corn_dog.png": "n07676602",  # frank.n.02
    "occ:food/meats_and_eggs/corn_dog_bw.png": "n07676602",  # frank.n.02
    "occ:food/meats_and_eggs/hot_dog.png": "n07697537",  # hotdog.n.02
    "occ:food/meats_and_eggs/hot_dog_bw.png": "n07697537",  # hotdog.n.02
    "occ:food/meats_and_eggs/hot_dog_juliane_krug_r.png": "n07697537",  # hotdog.n.02
    "occ:geography/arkansas_symbol_ganson.png": "n11669921",  # flower.n.01
    "occ:people/car_ride_ganson.png": "n02958343",  # car.n.01
    "occ:plants/bamboo_danny_allen_r.png": "n12147226",  # bamboo.n.02
    "occ:plants/cactus_linda_kim_01.png": "n11669921",  # flower.n.01
    "occ:plants/daffodil_jonathan_dietri_01.png": "n11669921",  # flower.n.01
    "occ:plants/fall_coloured_leaf_geral_01.png": "n13152742",  # leaf.n.01
    "occ:plants/fall_coloured_leaf_geral_02.png": "n13152742",  # leaf.n.01
    "occ:plants/fall_coloured_tree_geral_01.png": "n13104059",  # tree.n.01
    "occ:plants/fall_scene_in_a_circle_a_01.png": "n13104059",  # tree.n.01
    "occ:plants/flowers/bouquet_of_flowers_01.png": "n11669921",  # flower.n.01
    "occ:plants/flowers/cartoon_tree_01.png": "n13104059",  # tree.n.01
    "occ:plants/flowers/daffodil_susan_park_01.png": "n11669921",  # flower.n.01
    "occ:plants/flowers/daisy_jonathan_dietrich_01.png": "n11669921",  # flower.n.01
    "occ:plants/flowers/dream_flower_janet_theob_01.png": "n11669921",  # flower.n.01
    "occ:plants/flowers/fiore_01.png": "n11669921",  # flower.n.01
    "occ:plants/flowers/flower1_juliane_krug_01.png": "n11669921",  # flower.n.01
    "occ:plants/flowers/flower2_juliane_krug_01.png": "n11669921",  # flower.n.01
    "occ:plants/flowers/flower_01.png": "n11669921",  # flower.n.01
    "occ:plants/flowers/flower_02.png": "n11669921",  # flower.n.01
    "occ:plants/flowers/flower_03.png": "n11669921",  # flower.n.01
    "occ:plants/flowers/flower_peterm_01.png": "n11669921",  # flower.n.01
    "occ:plants/flowers/flowerandpot_daniel_ste_r.png": "n11669921",  # flower.n.01
    "occ:plants/flowers/flowers_jonathan_dietric_01.png": "n11669921",  # flower.n.01
    "occ:plants/flowers/full_bloom_linda_kim_01.png": "n11669921",  # flower.n.01
    "occ:plants/flowers/funnyflower_02.png": "n11669921",  # flower.n.01
    "occ:plants/flowers/geranium_ganson.png": "n11669921",  # flower.n.01
    "occ:plants/flowers/magnolia-white_patricia__01.png": "n11669921",  # flower.n.01
    "occ:plants/flowers/magnolia_white_patricia__01.png": "n11669921",  # flower.n.01
    "occ:plants/flowers/pink-rose_tess_brady_01.png": "n11669921",  # flower.n.01
    "occ:plants/flowers/red_flower_01.png": "n11669921",  # flower.n.01
    "occ:plants/flowers/red_flower_03.png": "n11669921",  # flower.n.01
    "occ:plants/flowers/red_flower_raphael_seban_01.png": "n11669921",  # flower.n.01
    "occ:plants/flowers/sakura_dave_pena_01.png": "n11669921",  # flower.n.01
    "occ:plants/flowers/simple_five_pettle_daff_01.png": "n11669921",  # flower.n.01
    "occ:plants/flowers/sun_flower_ganson.png": "n11669921",  # flower.n.01
    "occ:plants/flowers/tulips_ganson.png": "n11669921",  # flower.n.01
    "occ:plants/palmtree_b_r_kessels_.png": "n13104059",  # tree.n.01
    "occ:plants/tree_branches_and_roots_01.png": "n13104059",  # tree.n.01
    "occ:plants/trees/bowsaw_benji_park_01.png": "n04140064",  # saw.n.02
    "occ:plants/trees/bypasspruner_benji_park_01.png": "n04016684",  # pruning_shears.n.01
    "occ:plants/trees/christmas_balls_mo_01.png": "n03169390",  # decoration.n.01
    "occ:plants/trees/christmas_tree_mo_01.png": "n13104059",  # tree.n.01
    "occ:plants/trees/evergreen/christmas_tree_01.png": "n13104059",  # tree.n.01
    "occ:plants/trees/evergreen/plain_tree_01.png": "n13104059",  # tree.n.01
    "occ:plants/trees/evergreen/simple_evergreen_with_highlights_01.png": "n13104059",  # tree.n.01
    "occ:plants/trees/evergreen/tree.png": "n13104059",  # tree.n.01
    "occ:plants/trees/evergreen/tree_02.png": "n13104059",  # tree.n.01
    "occ:plants/trees/fern_mo_01.png": "n11545714",  # fern.n.01
    "occ:plants/trees/tree_01.png": "n13104059",  # tree.n.01
    "occ:recreation/games/cards/two_cats_tess_brady_01.png": "n02121620",  # cat.n.01
    "occ:recreation/music/CD_Player/rca_stereo_cd_player_jo_r.png": "n02988304",  # cd_player.n.01
    "occ:recreation/religion/discordian_sacred_chao_01r.png": "n06880664",  # emblem.n.02
    "occ:signs_and_symbols/car_0_symbol_10cm_bwh.png": "n02958343",  # car.n.01
    "occ:signs_and_symbols/car_1_symbol_10cm_bwh.png": "n02958343",  # car.n.01
    "occ:signs_and_symbols/chodovian_39_s_dog_by_m_01.png": "n02084071",  # dog.n.01
    "occ:signs_and_symbols/clocks/alarm_clock_gerald_g._01.png": "n03046257",  # clock.n.01
    "occ:signs_and_symbols/clocks/alarm_clock_mike_powers_.png": "n03046257",  # clock.n.01
    "occ:signs_and_symbols/clocks/analog_clock_jonathan_di_01.png": "n03046257",  # clock.n.01
    "occ:signs_and_symbols/clocks/analogue_clock_01.png": "n03046257",  # clock.n.01
    "occ:signs_and_symbols/clocks/clock01.png": "n03046257",  # clock.n.01
    "occ:signs_and_symbols/clocks/clock02.png": "n03046257",  # clock.n.01
    "occ:signs_and_symbols/clocks/clock03.png": "n03046257",  # clock.n.01
    "occ:signs_and_symbols/clocks/clock04.png": "n03046257",  # clock.n.01
    "occ:signs_and_symbols/clocks/clock05.png": "n03046257",  # clock.n.01
    "occ:signs_and_symbols/clocks/clock06.png": "n03046257",  # clock.n.01
    "occ:signs_and_symbols/clocks/clock07.png": "n03046257",  # clock.n.01
    "occ:signs_and_symbols/clocks/clock08.png": "n03046257",  # clock.n.01
    "occ:signs_and_symbols/clocks/clock09.png": "n03046257",  # clock.n.01
    "occ:signs_and_symbols/clocks/clock10.png": "n03046257",  # clock.n.01
    "occ:signs_and_symbols/clocks/clock11.png": "n03046257",  # clock.n.01
    "occ:signs_and_symbols/clocks/clock12.png": "n03046257",  # clock.n.01
    "occ:signs_and_symbols/clocks/clock_michael_breuer_01.png": "n03046257",  # clock.n.01
    "occ:signs_and_symbols/clocks/clock_michael_breuer_02.png": "n03046257",  # clock.n.01
    "occ:signs_and_symbols/clocks/clock_michael_breuer_03.png": "n03046257",  # clock.n.01
    "occ:signs_and_symbols/clocks/clock_michael_breuer_04.png": "n03046257",  # clock.n.01
    "occ:signs_and_symbols/clocks/minute_hand_mitchell_joh_.png": "n03772584",  # minute_hand.n.01
    "occ:signs_and_symbols/clocks/modern_clock_chris_kemps_01.png": "n03046257",  # clock.n.01
    "occ:signs_and_symbols/flower_bed_0_symbol_1m_bwh.png": "n03368352",  # flowerbed.n.01
    "occ:signs_and_symbols/for_sale_sign_template_01.png": "n04217882",  # signboard.n.01
    "occ:signs_and_symbols/map_symbols/aiga_car_rental1.png": "n02958343",  # car.n.01
    "occ:signs_and_symbols/map_symbols/aiga_car_rental_.png": "n02958343",  # car.n.01
    "occ:signs_and_symbols/map_symbols/aiga_no_dogs_.png": "n06793231",  # sign.n.02
    "occ:signs_and_symbols/map_symbols/tree_-_rpg_map_elements_01.png": "n13104059",  # tree.n.01
    "occ:signs_and_symbols/map_symbols/tree_-_rpg_map_elements_02.png": "n13104059",  # tree.n.01
    "occ:signs_and_symbols/map_symbols/tree_-_rpg_map_elements_03.png": "n13104059",  # tree.n.01
    "occ:signs_and_symbols/map_symbols/tree_-_rpg_map_elements_04.png": "n13104059",  # tree.n.01
    "occ:signs_and_symbols/map_symbols/tree_-_rpg_map_elements_05.png": "n13104059",  # tree.n.01
    "occ:signs_and_symbols/map_symbols/tree_-_rpg_map_elements_06.png": "n13104059",  # tree.n.01
    "occ:signs_and_symbols/map_symbols/tree_-_rpg_map_elements_07.png": "n13104059",  # tree.n.01
    "occ:signs_and_symbols/map_symbols/tree_-_rpg_map_elements_08.png": "n13104059",  # tree.n.01
    "occ:signs_and_symbols/map_symbols/tree_-_rpg_map_elements_09.png": "n13104059",  # tree.n.01
    "occ:signs_and_symbols/map_symbols/tree_-_rpg_map_elements_10.png": "n13104059",  # tree.n.01
    "occ:signs_and_symbols/map_symbols/tree_-_rpg_map_elements_11.png": "n13104059",  # tree.n.01
    "occ:signs_and_symbols/map_symbols/tree_-_rpg_map_elements_12.png": "n13104059",  # tree.n.01
    "occ:signs_and_symbols/map_symbols/tree_-_rpg_map_elements_13.png": "n13104059",  # tree.n.01
    "occ:signs_and_symbols/map_symbols/tree_-_rpg_map_elements_14.png": "n13104059",  # tree.n.01
    "occ:signs_and_symbols/map_symbols/tree_-_rpg_map_elements_15.png": "n13104059",  # tree.n.01
    "occ:special/gradients/gradient-apple-green.png": "n06389553",  # space.n.07: blank, fully transparent PNG
    "occ:transportation/autos_01.png": "n02958343",  # car.n.01
    "occ:transportation/car_jamin_ellis_.png": "n02958343",  # car.n.01
    "occ:transportation/formula_one_car_gerald_g_01.png": "n02958343",  # car.n.01
    "occ:transportation/old_car_lumen_design_st_r.png": "n02958343",  # car.n.01
    "occ:transportation/old_truck_indana_model__01.png": "n04490091",  # truck.n.01
    "occ:transportation/redcar_marcelo_caiafa_.png": "n02958343",  # car.n.01
    "occ:transportation/road_runner_ganson.png": "n02958343",  # car.n.01
    "occ:transportation/roadsigns/parking_romus_01.png": "n06794110",  # street_sign.n.01
    "occ:transportation/shelby_cobra_blueprint_i_01.png": "n02958343",  # car.n.01
    "occ:transportation/skoda_car_alejandro_teja_.png": "n02958343",  # car.n.01
    "occ:transportation/vehicles/1989_chevrolet_celebrit_01.png": "n02958343",  # car.n.01
    "occ:transportation/vehicles/1989_chevrolet_celebrit_02.png": "n02958343",  # car.n.01
    "occ:transportation/vehicles/4wd.png": "n02958343",  # car.n.01
    "occ:transportation/vehicles/car.png": "n02958343",  # car.n.01
    "occ:transportation/vehicles/shelby_cobra_car_bluepr_.png": "n02958343",  # car.n.01
    "occ:unsorted/van_gogh_s_sun_flower_en_01.png": "n11669921",  # flower.n.01
    "tux:animals/mammals/dogs/dog.png": "n02084071",  # dog.n.01
    "tux:food/fruit/apple_fuji.png": "n07739125",  # apple.n.01
    "tux:food/fruit/apple_granny_smith.png": "n07739125",  # apple.n.01
    "tux:food/fruit/apple_green.png": "n07739125",  # apple.n.01
    "tux:food/fruit/apple_red.png": "n07739125",  # apple.n.01
    "tux:food/fruit/apple_sierra_beauty.png": "n07739125",  # apple.n.01
    "tux:food/fruit/cartoon/apple.png": "n07739125",  # apple.n.01
    "tux:food/fruit/cartoon/apple_core.png": "n07739125",  # apple.n.01
    "tux:plants/flowers/anemone_red.png": "n11669921",  # flower.n.01
    "tux:plants/flowers/flower1.png": "n11669921",  # flower.n.01
    "tux:plants/flowers/flower10.png": "n11669921",  # flower.n.01
    "tux:plants/flowers/flower2.png": "n11669921",  # flower.n.01
    "tux:plants/flowers/flower3.png": "n11669921",  # flower.n.01
    "tux:plants/flowers/flower4.png": "n11669921",  # flower.n.01
    "tux:plants/flowers/flower5.png": "n11669921",  # flower.n.01
    "tux:plants/flowers/flower6.png": "n11669921",  # flower.n.01
    "tux:plants/flowers/flower7.png": "n11669921",  # flower.n.01
    "tux:plants/flowers/flower8.png": "n11669921",  # flower.n.01
    "tux:plants/flowers/flower9.png": "n11669921",  # flower.n.01
    "tux:plants/flowers/pigface.png": "n11669921",  # flower.n.01
    "tux:plants/flowers/plastic/chuvanna_plastic_poo.png": "n02745395",  # artificial_flower.n.01
    "tux:plants/flowers/yellow-flower.png": "n11669921",  # flower.n.01
    "tux:plants/trees/liberia-palm.png": "n13104059",  # tree.n.01
    "tux:plants/trees/rambutan.png": "n07769731",  # rambutan.n.02: 'An alien tree!' is rambutan fruit
    "tux:plants/trees/tree336.png": "n13104059",  # tree.n.01
    "tux:seasonal/christmas/Christmas_Tree_photo.png": "n13104059",  # tree.n.01
    "tux:seasonal/christmas/tree.png": "n13104059",  # tree.n.01
    "tux:seasonal/halloween/blackcat.png": "n02121620",  # cat.n.01
    "tux:symbols/clockface.png": "n03046257",  # clock.n.01
    "tux:symbols/money/canadian/coins/100loonie.png": "n13388245",  # coin.n.01
    "tux:vehicles/auto/sedan.png": "n02958343",  # car.n.01
    "tux:vehicles/auto/sportscar2.png": "n02958343",  # car.n.01
    "tux:vehicles/emergency/sedan_police.png": "n03167464",  # decal.n.01
    "tux:vehicles/race/indycar.png": "n02958343",  # car.n.01
}

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")


# --- the search, as curate.sources.local does it ---------------------------------------------


def search_words(caption: str, stem: str) -> frozenset[str]:
    return frozenset(tokenize(caption + " | " + stem.replace("_", " ").replace("-", " ")))


def matches(query: str, words: frozenset[str]) -> bool:
    wanted = [word_forms(w) for w in tokenize(query)]
    return bool(wanted) and all(forms & words for forms in wanted)


def classes_hit(words: frozenset[str]) -> list[str]:
    return [
        c["wnid"] for c in CLASSES if any(matches(lemma.replace("_", " "), words) for lemma in c["lemmas"])
    ]


# --- captions from the package metadata -------------------------------------------------------


def clean(text: str) -> str:
    """Decode entities (some titles are escaped twice) and fix UTF-8 read as Latin-1."""
    for _ in range(2):
        text = html.unescape(text)
    if "Ã" in text or "Â" in text:
        try:
            text = text.encode("latin-1").decode("utf-8")
        except UnicodeError:
            pass
    return re.sub(r"\s+", " ", text).strip()


def svg_metadata(svg: Path) -> dict:
    raw = svg.read_bytes().decode("utf-8", errors="replace")
    m = re.search(r"<metadata.*?</metadata>", raw, re.S)
    md = m.group(0) if m else ""

    def first(pattern: str) -> str:
        found = re.search(pattern, md, re.S)
        return clean(found.group(1)) if found else ""

    subject = re.search(r"<dc:subject>(.*?)</dc:subject>", md, re.S)
    tags = re.findall(r"<rdf:li>(.*?)</rdf:li>", subject.group(1), re.S) if subject else []
    tags = [clean(t) for t in tags]
    return {
        "title": first(r"<cc:Work[^>]*>.*?<dc:title>(.*?)</dc:title>"),
        "description": first(r"<dc:description>(.*?)</dc:description>"),
        "creator": first(r"<dc:creator>.*?<dc:title>(.*?)</dc:title>"),
        "tags": [t for t in tags if t],
    }


def openclipart_caption(meta: dict) -> str:
    """Title, description (when it adds something) and keywords. A part that contains an e-mail
    address is left out (some drawings carry their author's address as title or description)."""
    parts = []
    for text in (meta["title"], meta["description"]):
        text = text.rstrip(". ")
        if text and not _EMAIL.search(text) and text.lower() not in (p.lower() for p in parts):
            parts.append(text)
    caption = ". ".join(parts)
    if meta["tags"]:
        caption += (". " if caption else "") + "Tags: " + ", ".join(meta["tags"])
    return caption


def openclipart_creator(name: str) -> str:
    name = re.sub(r"<[^>]*>?|\([^)]*@[^)]*\)", "", name)  # "<address>" and "(address)"
    name = _EMAIL.sub("", name)
    return name.strip(" -,")


def tuxpaint_caption(png: Path) -> str:
    txt = png.with_suffix(".txt")
    if not txt.is_file():
        return ""
    lines = txt.read_text(encoding="utf-8", errors="replace").splitlines()
    return clean(lines[0]) if lines else ""  # the first line is the English description


def candidates() -> list[dict]:
    items = []
    for png in sorted(OCC_PNG.rglob("*.png")):
        svg = OCC_SVG / png.relative_to(OCC_PNG).with_suffix(".svg")
        meta = svg_metadata(svg) if svg.is_file() else dict(title="", description="", creator="", tags=[])
        items.append(
            {
                "key": "occ:" + png.relative_to(OCC_PNG).as_posix(),
                "src": png,
                "prefix": "occ",
                "caption": openclipart_caption(meta),
                "creator": openclipart_creator(meta["creator"]),
            }
        )
    for png in sorted(TUX.rglob("*.png")):
        items.append(
            {
                "key": "tux:" + png.relative_to(TUX).as_posix(),
                "src": png,
                "prefix": "tux",
                "caption": tuxpaint_caption(png),
                "creator": "",
            }
        )
    return items


def search_hits(items: list[dict]) -> list[dict]:
    hits = []
    for item in items:
        item["classes"] = classes_hit(search_words(item["caption"], item["src"].stem))
        if item["classes"]:
            hits.append(item)
    seen, unique = set(), []
    for item in sorted(hits, key=lambda i: str(i["src"])):
        digest = hashlib.sha256(item["src"].read_bytes()).hexdigest()
        if digest not in seen:
            seen.add(digest)
            unique.append(item)
    return unique


# --- output -----------------------------------------------------------------------------------


def output_names(items: list[dict]) -> None:
    """occ_/tux_ + the original base name, lowercased, runs of other characters as one underscore;
    a clash gets _2, _3, ... in source-path order (numbers add no search words)."""
    taken: set[str] = set()
    for item in sorted(items, key=lambda i: str(i["src"])):
        base = item["prefix"] + "_" + re.sub(r"[^a-z0-9]+", "_", item["src"].stem.lower()).strip("_")
        name, n = base, 1
        while name in taken:
            n += 1
            name = f"{base}_{n}"
        taken.add(name)
        item["file"] = f"images/{name}.jpg"


def to_jpeg(src: Path, dst: Path) -> None:
    Image.MAX_IMAGE_PIXELS = None  # one drawing is rendered at 10524 x 16000
    with Image.open(src) as im:
        im.load()
        if im.mode.startswith("I") or im.mode == "F":
            im = im.point(lambda v: v / 256).convert("L")
        if im.mode in ("P", "LA", "PA", "La") or "transparency" in im.info:
            im = im.convert("RGBA")
        if im.mode == "RGBA":
            flat = Image.new("RGB", im.size, (255, 255, 255))
            flat.paste(im, mask=im.getchannel("A"))
            im = flat
        im = im.convert("RGB")
        im.thumbnail((MAX_SIDE, MAX_SIDE), Image.LANCZOS)
        # 4:4:4 chroma (no subsampling) keeps the sharp colour edges of clip art clean
        im.save(dst, "JPEG", quality=JPEG_QUALITY, subsampling=0, optimize=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--list", action="store_true", help="print the search hits, write nothing")
    args = parser.parse_args()

    for root in (OCC_PNG, OCC_SVG, TUX):
        if not root.is_dir():
            sys.exit(f"{root} not found: apt-get install {' '.join(DEBIAN_PACKAGES)}")
    hits = search_hits(candidates())
    if args.list:
        for item in hits:
            print(item["key"], "|", " ".join(item["classes"]), "|", item["caption"])
        return 0

    found, labelled = {i["key"] for i in hits}, set(LABELS)
    if found != labelled:
        for key in sorted(found - labelled):
            print("search hit without a label (look at it and add it to LABELS):", key, file=sys.stderr)
        for key in sorted(labelled - found):
            print("label for an image the search no longer finds:", key, file=sys.stderr)
        return 1

    output_names(hits)
    for item in hits:  # the pipeline searches the output file name, not the source one
        now = classes_hit(search_words(item["caption"], Path(item["file"]).stem))
        if now != item["classes"]:
            sys.exit(f"{item['file']}: renaming changed its search classes {item['classes']} -> {now}")

    images = OUT / "images"
    images.mkdir(parents=True, exist_ok=True)
    keep = {Path(i["file"]).name for i in hits}
    for old in images.glob("*"):
        if old.name not in keep:
            old.unlink()
    rows = []
    for item in sorted(hits, key=lambda i: i["file"]):
        to_jpeg(item["src"], OUT / item["file"])
        rows.append(
            {
                "file": item["file"],
                "caption": item["caption"],
                "true_wnids": LABELS[item["key"]],
                "license": LICENSES[item["prefix"]],
                "creator": item["creator"],
                "origin": f"debian:{PACKAGES[item['prefix']]}:{item['src']}",
            }
        )
    with (OUT / "index.csv").open("w", newline="", encoding="utf-8") as fh:
        fields = ["file", "caption", "true_wnids", "license", "creator", "origin"]
        writer = csv.DictWriter(fh, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    with (OUT / "classes.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["wnid", "synset", "words", "why"])
        for c in CLASSES:
            words = "; ".join(lemma.replace("_", " ") for lemma in c["lemmas"])
            writer.writerow([c["wnid"], c["synset"], words, c["why"]])

    total_hits = total_true = 0
    for c in CLASSES:
        mine = [i for i in hits if c["wnid"] in i["classes"]]
        true = sum(c["wnid"] in LABELS[i["key"]].split() for i in mine)
        total_hits, total_true = total_hits + len(mine), total_true + true
        noise = 1 - true / len(mine)
        print(f"{c['wnid']} {c['synset']:<12} hits {len(mine):3d}  true {true:3d}  noise {noise:.0%}")
    print(f"{len(rows)} images; keyword hits {total_hits}, noise {1 - total_true / total_hits:.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
