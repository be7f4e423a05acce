"""The named datasets and the loader (one per source format) that reads each."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from mtrec.data.builder import ImportResult
from mtrec.data.sources.base import DatasetSpec, LoadContext, SourceError
from mtrec.data.sources.crossdomain import load_cross_domain
from mtrec.data.sources.ctr import ALI_CCP, ALIEXPRESS, load_ctr
from mtrec.data.sources.movielens import load_grouplens
from mtrec.data.sources.p5 import load_p5
from mtrec.data.sources.pairs import load_pairs
from mtrec.data.sources.recbole import load_recbole
from mtrec.data.sources.rechorus import load_rechorus
from mtrec.data.sources.sslrec import RETAILROCKET, TAOBAO, load_sslrec
from mtrec.data.sources.unisrec import load_unisrec


def _load_ml100k(folder: Path, ctx: LoadContext) -> ImportResult:
    """RecBole's atomic copy, or GroupLens' own layout from the official zip."""
    if (folder / "ml-100k.inter").is_file():
        return load_recbole(folder, ctx, "ml-100k")
    return load_grouplens(folder, ctx)


DATASETS: dict[str, DatasetSpec] = {s.name: s for s in (
    DatasetSpec("amazon-beauty", "amazon-beauty-p5/Beauty", "user_sequence.txt", load_p5,
                "Amazon 2014 Beauty 5-core, P5 leave-one-out sequences with titles"),
    DatasetSpec("amazon-scientific", "amazon-scientific-unisrec", "Scientific.test.inter",
                partial(load_unisrec, name="Scientific"),
                "Amazon 2018 Industrial & Scientific, UniSRec files with their own split"),
    DatasetSpec("amazon-office", "amazon-office-lrd", "Office.text",
                partial(load_rechorus, name="Office"),
                "Amazon 2014 Office, ReChorus/LRD csv with timestamps and own split"),
    DatasetSpec("ml-100k", "ml-100k-recbole", "ml-100k.inter|u.data", _load_ml100k,
                "MovieLens-100K ratings, timestamps, movie text, user attributes",
                url="https://files.grouplens.org/datasets/movielens/ml-100k.zip"),
    DatasetSpec("jdata", "multibehavior-jdata/jdata", "count.txt", load_pairs,
                "JData multi-behaviour pairs (buy, cart, collect), ID only"),
    DatasetSpec("retailrocket", "retailrocket", "events.csv",
                partial(load_sslrec, behaviors=RETAILROCKET),
                "RetailRocket view, cart, purchase with timestamps (SSLRec subset), ID only"),
    DatasetSpec("taobao-ub", "taobao-ub", "events.csv", partial(load_sslrec, behaviors=TAOBAO),
                "Taobao UserBehavior collect, cart, purchase with timestamps (SSLRec), ID only"),
    DatasetSpec("amazon-sport-cloth", "amazon-cross-domain", "sport-cloth.sport.train.csv",
                partial(load_cross_domain, pair="sport-cloth", domains=("sport", "cloth")),
                "Amazon Sport + Cloth, shared users, each domain a scenario (DisenCDR), ID only"),
    DatasetSpec("amazon-phone-electronic", "amazon-cross-domain",
                "phone-electronic.phone.train.csv",
                partial(load_cross_domain, pair="phone-electronic",
                        domains=("phone", "electronic")),
                "Amazon Phone + Electronic, shared users, each domain a scenario (DisenCDR), "
                "ID only"),
    DatasetSpec("ali-ccp-sample", "ali-ccp-sample", "ali_ccp_train_sample.csv",
                partial(load_ctr, layout=ALI_CCP),
                "Ali-CCP click + conversion, tiny sample with feature columns"),
    DatasetSpec("aliexpress-sample", "aliexpress-sample", "aliexpress_train_sample.csv",
                partial(load_ctr, layout=ALIEXPRESS),
                "AliExpress click + conversion, tiny sample with feature columns"),
)}


def get_spec(name: str) -> DatasetSpec:
    try:
        return DATASETS[name]
    except KeyError:
        raise SourceError(
            f"unknown dataset {name!r}; known: {', '.join(DATASETS)} "
            "(or use `mtrec data import --mapping FILE` for your own files)"
        ) from None


__all__ = ["DATASETS", "DatasetSpec", "LoadContext", "SourceError", "get_spec"]
