#!/usr/bin/python3
"""Reference cases for Chatterbox Multilingual's text front end, made by running
upstream's own code (resemble-ai/chatterbox 5de7a54: mtl_tts.punc_norm and
models/tokenizers/tokenizer.py MTLTokenizer) on a made-up tiny vocabulary.

Only what Debian lacks is restated here, each piece in a small shim module:
  tokenizers       Tokenizer.from_file / get_vocab / encode(...).ids for the
                   layout the tiny file has (BPE, normalizer null, Whitespace
                   pre-tokenizer, added tokens), as tests/t3's English notes
                   describe the library's behaviour;
  huggingface_hub  hf_hub_download -> the Cangjie5_TC.json written here;
  jaconv           imported by pykakasi, whose convert() never calls it.
pykakasi itself (2.3.0, upstream's pin) is run from its source tree
(github:miurahr/pykakasi at tag v2.3.0), its dictionaries built by its own
build step (kakasidict.Genkanwadict); it needs python3-deprecated.
spacy_pkuseg, dicta_onnx and russian_text_stresser are absent, so upstream
takes its own fallbacks (no Chinese word segmentation, no Hebrew diacritics,
no Russian stress marks), exactly as the C++ front end does.

Writes into OUT_DIR:
  mtl_tiny.json      the tiny vocabulary (HF tokenizers JSON, BPE)
  Cangjie5_TC.json   a subset of Cangjie5_TC.txt (github:Jackchows/Cangjie5)
                     in upstream's format: a JSON list of "glyph\\tcode..." lines
  mtl_cases.tsv      lang, raw, punc_norm, prepared (the string handed to the
                     tokenizer), ids (before the 255/0 padding)

usage: make_mtl_cases.py CHATTERBOX_REPO PYKAKASI_REPO CANGJIE5_REPO OUT_DIR
(each *_REPO a git directory; fetched with the project's fetch tool)
"""
import json
import os
import subprocess
import sys
import tempfile
import types
import unicodedata
from collections import Counter

CHATTERBOX_COMMIT = "5de7a54aa4e5e2baadb0182dde554908b48b85c2"
PYKAKASI_TAG = "v2.3.0"

# At least five strings per language, with punctuation, digits and mixed scripts.
CASES = {
    "ar": ["مرحبا بالعالم!", "كم الساعة الآن؟ إنها 10:30.", "أحب قراءة الكتب; خاصة في الصيف.",
           "هذا هو الإصدار 2.0 من Chatterbox.", "قال: «لا أعرف»… ثم ذهب.", "  السلام   عليكم  "],
    "da": ["Hej verden!", "Jeg har 3 æbler og 2 pærer.", "Hvad hedder du? Jeg hedder Søren.",
           "Det koster 99,95 kr. — ikke mere.", "blåbærgrød er godt; ikke?", "Ærø ligger i Østersøen"],
    "de": ["Guten Morgen, wie geht's?", "Die Straße ist 25 km lang.", "Über den Wolken: Freiheit…",
           "ÄÖÜ äöü ß — Großbuchstaben!", "Er sagte „Hallo“ und ging.", "Version 3.1 von GStreamer"],
    "el": ["Γειά σου κόσμε!", "Πόσο κοστίζει; 15 ευρώ.", "Η Αθήνα είναι η πρωτεύουσα.",
           "ΚΑΛΗΜΕΡΑ ΣΑΣ, φίλοι μου…", "Το GStreamer 1.22 είναι γρήγορο.", "Ω ωραία μέρα: ήλιος!"],
    "en": ["Hello world!", "It's 5 o'clock — time for tea.", "Wait... what?  Really?",
           "The café serves naïve crème brûlée.", "Version 2.0: faster; better.", "“Quoted” text, ‘single’ too"],
    "es": ["¡Hola, mundo!", "¿Cómo estás? Muy bien, gracias.", "Tengo 3 niños y 2 niñas.",
           "El pingüino comió 1.500 peces…", "Señor Núñez: ¡bienvenido!", "La canción de Ángel — preciosa"],
    "fi": ["Hei maailma!", "Hyvää huomenta; miten menee?", "Minulla on 7 kissaa ja 1 koira.",
           "Äänekoski on kaunis kaupunki.", "Öljy maksaa 2,50 €.", "Tämä on GStreamer-testi"],
    "fr": ["Bonjour le monde !", "Ça va ? Très bien, merci.", "J'ai 12 ans et demi.",
           "L'élève a mangé une crêpe à Noël.", "« Où est la gare ? » demanda-t-il…", "Œuvre française: été 2024"],
    "he": ["שלום עולם!", "מה השעה? השעה 10.", "אני אוהב ללמוד עברית.",
           "זהו GStreamer גרסה 1.22.", "הוא אמר: \"כן\" והלך…", "תודה רבה, חברים"],
    "hi": ["नमस्ते दुनिया!", "आप कैसे हैं? मैं ठीक हूँ।", "मेरे पास 5 किताबें हैं।",
           "यह GStreamer का परीक्षण है।", "भारत की राजधानी दिल्ली है; बहुत बड़ी।", "क़िला और ज़मीन"],
    "it": ["Ciao mondo!", "Com'è andata? Benissimo.", "Ho 4 gatti e 1 cane.",
           "Perché la città è così bella…", "L'università di Bologna: 1088.", "Èrano là; più tardi"],
    "ja": ["こんにちは、世界！", "今日はいい天気ですね。", "私は学生です。2024年に卒業します。",
           "東京へ行きました！カタカナもＯＫ？", "花が咲く季節、部屋に入る。", "日本語を勉強しています…ガギグゲゴ",
           "時々雨が降ります。", "漢字とひらがなとカタカナ",
           # harder words: where pykakasi's UniDic additions or longest match may choose otherwise
           "日本語学校で勉強します。", "明日は雨が降るでしょう。", "彼女は図書館へ行った。", "新しい携帯電話を買いました！",
           "一ヶ月前に引っ越しました。", "東京都庁は新宿にあります。", "春夏秋冬、人々は生きる。", "大人しい子供が泳ぐ。",
           "鬱蒼とした森の中で３匹の猫を見た。", "お茶を飲みながら話しましょう。", "生ビールを一杯ください。", "上手に下手な絵を描く。",
           "昨日、本を買った。", "ちょっと待って！", "彼は何と言ったの？", "駅まで走った。", "試合に勝って嬉しい。"],
    # Japanese agreement set: everyday sentences written without looking at
    # either converter, to measure libkakasi against pykakasi.
    "ja+": ["私の名前は田中です。", "毎朝七時に起きます。", "駅の近くに新しいレストランができました。",
            "この本はとても面白かったです。", "週末は家族と海に行きます。", "日本の夏は暑くて湿気が多い。",
            "会議は午後三時から始まります。", "すみません、トイレはどこですか？", "電車が遅れて、学校に遅刻した。",
            "彼女はピアノを弾くのが上手です。", "明後日までに宿題を終わらせなければならない。", "冷蔵庫に牛乳がありません。",
            "子供たちが公園で遊んでいる。", "先生に質問してもいいですか？", "富士山に登ったことがありますか？",
            "天気予報によると、明日は晴れるそうです。", "このカメラは高すぎて買えない。", "病院で薬をもらいました。",
            "友達と映画を見に行った。", "猫が窓の外を見ている。", "図書館で静かに勉強してください。",
            "東京から大阪まで新幹線で二時間半です。", "お誕生日おめでとうございます！", "昔々、ある村に老人が住んでいました。",
            "地震の時は机の下に隠れてください。", "経済の問題について話し合った。", "桜の花が満開です。",
            "日曜日に部屋を掃除しました。", "山田さんは銀行で働いている。", "この漢字の読み方を教えてください。"],
    "ko": ["안녕하세요, 세계!", "오늘 날씨가 좋네요.", "저는 3개의 사과를 가지고 있어요.",
           "GStreamer 1.22 버전입니다!", "감사합니다… 정말로?", "  한국어 공부  "],
    "ms": ["Selamat pagi, dunia!", "Apa khabar? Saya sihat.", "Saya ada 3 ekor kucing.",
           "Kuala Lumpur ialah ibu negara Malaysia.", "Terima kasih; jumpa lagi…", "Versi 2.0 GStreamer"],
    "nl": ["Hallo wereld!", "Hoe gaat het? Goed, dank je.", "Ik heb 2 fietsen en 1 auto.",
           "Het café is één straat verder.", "Zeeën en ideeën: mooi…", "IJsland — koud maar mooi"],
    "no": ["Hei verden!", "Hvordan går det? Bra, takk.", "Jeg har 4 barn.",
           "Blåbær og rømme er godt.", "Ærlig talt: økonomi…", "Tromsø ligger i nord"],
    "pl": ["Witaj świecie!", "Jak się masz? Dobrze, dziękuję.", "Mam 3 koty i 2 psy.",
           "Zażółć gęślą jaźń.", "Łódź to duże miasto; ładne…", "Wersja 1.22 GStreamera"],
    "pt": ["Olá, mundo!", "Como você está? Estou bem.", "Tenho 5 irmãos e 2 irmãs.",
           "A educação é importante — sempre.", "São Paulo: cidade enorme…", "Coração, pão e maçã"],
    "ru": ["Привет, мир!", "Как дела? Хорошо, спасибо.", "У меня 3 кошки и 1 собака.",
           "Ёлка стоит в углу; красиво…", "Это GStreamer версии 1.22.", "Съешь ещё этих мягких булок"],
    "sv": ["Hej världen!", "Hur mår du? Bra, tack.", "Jag har 2 katter och 1 hund.",
           "Smörgåsbord är gott.", "Öppna dörren: nu…", "Åtta år i Göteborg"],
    "sw": ["Habari ya dunia!", "Habari gani? Nzuri sana.", "Nina watoto 3.",
           "Karibu Tanzania; nchi nzuri.", "Asante sana… kwaheri!", "Toleo 2.0 la GStreamer"],
    "tr": ["Merhaba dünya!", "Nasılsın? İyiyim, teşekkürler.", "3 kedim ve 1 köpeğim var.",
           "İstanbul çok güzel bir şehir.", "Işık, ığdır; şöyle…", "Sürüm 1.22 GStreamer"],
    "zh": ["你好，世界！", "今天天气很好。", "我有3个苹果和2个橘子。",
           "这是GStreamer 1.22版本！", "你吃饭了吗？我吃了、谢谢。", "中文和English混合",
           "日本語ですか？はい", "子曰：學而時習之，不亦說乎？", "漢字和汉字；杠杆 12 個", "他点头了，我们进去吧。"],
}


def git_archive(repo, ref, paths, dest):
    """Extracts `paths` of `ref` from a bare git directory into `dest`."""
    os.makedirs(dest, exist_ok=True)
    tar = subprocess.run(["git", "--git-dir", repo, "archive", ref] + paths, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", dest], input=tar, check=True)


# ------------------------------------------------------------ the shims ----

def is_word(c):
    """Oniguruma's Unicode \\w (the Whitespace pre-tokenizer's regex): Alphabetic,
    marks, decimal digits, connector punctuation, join controls. unicodedata has
    no Alphabetic property: letters and letter numbers stand for it (they differ
    on a few symbols such as circled letters, which NFKD removes anyway)."""
    cat = unicodedata.category(c)
    return cat[0] in "LM" or cat in ("Nd", "Nl", "Pc") or c in "\u200c\u200d"


def is_space(c):
    return c.isspace()


class Encoding:
    def __init__(self, ids, tokens):
        self.ids, self.tokens = ids, tokens


class Tokenizer:
    """The tokenizers library's behaviour for the tiny file's layout."""

    def __init__(self, j):
        assert j["normalizer"] is None and j["post_processor"] is None
        assert j["pre_tokenizer"] == {"type": "Whitespace"}
        m = j["model"]
        assert m["type"] == "BPE" and m["unk_token"] == "[UNK]" and not m.get("fuse_unk")
        self.vocab = dict(m["vocab"])
        self.added = [(a["content"], a["id"]) for a in j["added_tokens"]]
        for c, i in self.added:
            self.vocab.setdefault(c, i)
        self.id_to_tok = {i: t for t, i in self.vocab.items()}
        self.ranks = {}
        for r, mg in enumerate(m["merges"]):
            a, b = mg.split(" ") if isinstance(mg, str) else mg
            self.ranks.setdefault((a, b), r)

    @classmethod
    def from_file(cls, path):
        with open(path, encoding="utf-8") as f:
            return cls(json.load(f))

    def get_vocab(self):
        return dict(self.vocab)

    def _bpe(self, word):
        syms = [(c, c in self.vocab) for c in word]
        while len(syms) > 1:
            best = None
            for k in range(len(syms) - 1):
                if not (syms[k][1] and syms[k + 1][1]):
                    continue
                r = self.ranks.get((syms[k][0], syms[k + 1][0]))
                if r is not None and (best is None or r < best[0]):
                    best = (r, k)
            if best is None:
                break
            k = best[1]
            syms[k:k + 2] = [(syms[k][0] + syms[k + 1][0], True)]
        return [s if known else "[UNK]" for s, known in syms]

    def _plain(self, s, out):
        i = 0
        while i < len(s):
            if is_space(s[i]):
                i += 1
                continue
            w = is_word(s[i])
            j = i
            while j < len(s) and not is_space(s[j]) and is_word(s[j]) == w:
                j += 1
            out.extend(self._bpe(s[i:j]))
            i = j

    def encode(self, s):
        toks, pos = [], 0
        while pos < len(s):
            best = None
            for c, _ in self.added:
                h = s.find(c, pos)
                if h >= 0 and (best is None or h < best[0] or (h == best[0] and len(c) > len(best[1]))):
                    best = (h, c)
            if best is None:
                self._plain(s[pos:], toks)
                break
            self._plain(s[pos:best[0]], toks)
            toks.append(best[1])
            pos = best[0] + len(best[1])
        return Encoding([self.vocab[t] for t in toks], toks)


def install_shims(cangjie_path):
    tk = types.ModuleType("tokenizers")
    tk.Tokenizer = Tokenizer
    sys.modules["tokenizers"] = tk
    hub = types.ModuleType("huggingface_hub")

    def hf_hub_download(repo_id, filename, cache_dir=None, **_):
        assert filename == "Cangjie5_TC.json", filename
        return cangjie_path

    hub.hf_hub_download = hf_hub_download
    hub.snapshot_download = None
    sys.modules["huggingface_hub"] = hub
    sys.modules["jaconv"] = types.ModuleType("jaconv")  # pykakasi imports it; convert() does not use it


# ------------------------------------------------------------------ main ----

def main():
    chatterbox_repo, pykakasi_repo, cangjie_repo, out = sys.argv[1:5]
    os.makedirs(out, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="mtl_cases_")

    # pykakasi 2.3.0 with its dictionaries built as its setup.py does.
    # (unidic/lex.7z is not needed: the unidict_*.utf8 made from it are in the tree)
    data = subprocess.run(["git", "--git-dir", pykakasi_repo, "ls-tree", "--name-only", PYKAKASI_TAG, "src/data/"],
                          check=True, capture_output=True).stdout.decode().split()
    git_archive(pykakasi_repo, PYKAKASI_TAG, ["src/pykakasi", "src/kakasidict.py"] + [d for d in data if d.endswith(".utf8")],
                tmp + "/pykakasi_src")
    sys.path.insert(0, tmp + "/pykakasi_src/src")
    from kakasidict import Genkanwadict
    import kakasidict
    kakasidict.root_dir = tmp + "/pykakasi_src"
    Genkanwadict().generate_dictionaries(tmp + "/pykakasi_src/src/pykakasi/data")

    # Upstream's tokenizer module and punc_norm (mtl_tts.py imports the whole
    # model stack: its punc_norm is taken from the source text instead).
    git_archive(chatterbox_repo, CHATTERBOX_COMMIT, ["src/chatterbox"], tmp + "/chatterbox")
    src = tmp + "/chatterbox/src/chatterbox"
    mtl_src = open(src + "/mtl_tts.py", encoding="utf-8").read()
    start = mtl_src.index("def punc_norm(")
    end = mtl_src.index("\n@dataclass", start)
    ns = {}
    exec(mtl_src[start:end], ns)
    punc_norm = ns["punc_norm"]

    # The Cangjie subset: every line of each glyph used, and every line of
    # each code those glyphs have (so homograph indices are those of the
    # full table), in file order.
    table_lines = subprocess.run(["git", "--git-dir", cangjie_repo, "show", "HEAD:Cangjie5_TC.txt"], check=True,
                                 capture_output=True).stdout.decode("utf-8").splitlines()
    cangjie_commit = subprocess.run(["git", "--git-dir", cangjie_repo, "rev-parse", "HEAD"], check=True,
                                    capture_output=True).stdout.decode().strip()
    entries = [l for l in table_lines if "\t" in l and len(l.split("\t")[1]) >= 1 and l.split("\t")[1].isalpha()
               and l.split("\t")[1].islower() and l.split("\t")[1].isascii()]
    glyphs = set()
    for lang, texts in CASES.items():
        for t in texts:
            glyphs.update(c for c in unicodedata.normalize("NFKD", punc_norm(t).lower())
                          if unicodedata.category(c) == "Lo")
    codes = {e.split("\t")[1] for e in entries if e.split("\t")[0] in glyphs}
    subset = [e for e in entries if e.split("\t")[0] in glyphs or e.split("\t")[1] in codes]
    cangjie_path = os.path.join(out, "Cangjie5_TC.json")
    with open(cangjie_path, "w", encoding="utf-8") as f:
        json.dump(subset, f, ensure_ascii=False, indent=0)
        f.write("\n")

    install_shims(cangjie_path)
    sys.path.insert(0, tmp + "/chatterbox/src")
    # chatterbox/models/tokenizers/__init__.py imports only tokenizer.py
    import importlib.util
    spec = importlib.util.spec_from_file_location("mtl_tokenizer", src + "/models/tokenizers/tokenizer.py")
    tokmod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tokmod)

    # Pass 1: the strings upstream hands its tokenizer, through a recording
    # stand-in, to choose the tiny vocabulary.
    class Recorder:
        seen = []

        def encode(self, s):
            Recorder.seen.append(s)
            return Encoding([], [])

        def get_vocab(self):
            return {"[START]": 255, "[STOP]": 0}

    rec_tok = tokmod.MTLTokenizer.__new__(tokmod.MTLTokenizer)
    rec_tok.tokenizer = Recorder()
    rec_tok.cangjie_converter = tokmod.ChineseCangjieConverter(None)
    for lang, texts in CASES.items():
        for t in texts:
            rec_tok.encode(punc_norm(t), language_id=lang.rstrip("+"))

    specials = ["[STOP]", "[UNK]", "[SPACE]", "[PAD]", "[SEP]", "[CLS]", "[MASK]"]
    langs = [f"[{l}]" for l in CASES if not l.endswith("+")]
    cj = sorted({f"[cj_{c}]" for c in "abcdefghijklmnopqrstuvwxyz0123456789."})
    added = specials + langs + cj
    chars = Counter()
    stripped = []
    for s in Recorder.seen:
        for a in added:
            s = s.replace(a, " ")
        stripped.append(s)
        chars.update(c for c in s if not c.isspace())
    # Left out on purpose, to exercise [UNK]: one Devanagari nukta form, the
    # euro sign, the Arabic question mark.
    unknown = {"\u0929", "€", "؟"}
    alphabet = sorted(c for c in chars if c not in unknown)

    # A plain BPE trained on the stripped strings (merges never cross
    # pre-token boundaries), enough merges to exercise ranks and marks.
    words = Counter()
    for s in stripped:
        i = 0
        while i < len(s):
            if is_space(s[i]):
                i += 1
                continue
            w = is_word(s[i])
            j = i
            while j < len(s) and not is_space(s[j]) and is_word(s[j]) == w:
                j += 1
            words[tuple(c for c in s[i:j])] += 1
            i = j
    merges = []
    vocab_tokens = list(alphabet)
    for _ in range(160):
        pairs = Counter()
        for w, n in words.items():
            for a, b in zip(w, w[1:]):
                if a in unknown or b in unknown:
                    continue
                pairs[(a, b)] += n
        if not pairs:
            break
        (a, b), n = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))
        if n < 2:
            break
        merges.append(f"{a} {b}")
        vocab_tokens.append(a + b)
        nw = Counter()
        for w, c in words.items():
            o, k = [], 0
            while k < len(w):
                if k + 1 < len(w) and w[k] == a and w[k + 1] == b:
                    o.append(a + b)
                    k += 2
                else:
                    o.append(w[k])
                    k += 1
            nw[tuple(o)] += c
        words = nw

    vocab = {}
    for t in specials:
        vocab[t] = len(vocab)
    nid = len(vocab)
    ordered = langs + cj + vocab_tokens
    for t in ordered:
        if nid == 255:
            nid += 1  # [START]
        if t not in vocab:
            vocab[t] = nid
            nid += 1
    vocab["[START]"] = 255
    assert nid < 2454, nid
    added_tokens = [{"id": vocab[t], "content": t, "single_word": False, "lstrip": False, "rstrip": False,
                     "normalized": False, "special": True} for t in specials + ["[START]"] + langs + cj]
    tok_json = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added_tokens,
        "normalizer": None, "pre_tokenizer": {"type": "Whitespace"}, "post_processor": None, "decoder": None,
        "model": {"type": "BPE", "dropout": None, "unk_token": "[UNK]", "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                  "vocab": dict(sorted(vocab.items(), key=lambda kv: kv[1])), "merges": merges},
    }
    tok_path = os.path.join(out, "mtl_tiny.json")
    with open(tok_path, "w", encoding="utf-8") as f:
        json.dump(tok_json, f, ensure_ascii=False, indent=1)
        f.write("\n")

    # Pass 2: upstream's MTLTokenizer on the tiny file.
    mtl = tokmod.MTLTokenizer(tok_path)
    prepared = []

    class Spy(Tokenizer):
        def encode(self, s):
            prepared.append(s)
            return super().encode(s)

    mtl.tokenizer = Spy(tok_json)
    rows = []
    for lang, texts in CASES.items():
        for t in texts:
            pn = punc_norm(t)
            ids = mtl.text_to_tokens(pn, language_id=lang.rstrip("+"))[0].tolist()
            rows.append((lang.rstrip("+"), t, pn, prepared[-1], ids))
    with open(os.path.join(out, "mtl_cases.tsv"), "w", encoding="utf-8") as f:
        f.write(f"# made by tests/t3/make_mtl_cases.py: chatterbox {CHATTERBOX_COMMIT}, pykakasi {PYKAKASI_TAG}, "
                f"Cangjie5 {cangjie_commit}; spacy_pkuseg, dicta_onnx, russian_text_stresser absent\n")
        f.write("lang\traw_json\tpunc_norm_json\tprepared_json\tids\n")
        for lang, t, pn, p, ids in rows:
            f.write("\t".join([lang, json.dumps(t, ensure_ascii=False), json.dumps(pn, ensure_ascii=False),
                               json.dumps(p, ensure_ascii=False), ",".join(map(str, ids))]) + "\n")
    print(f"{len(rows)} cases, vocabulary {len(vocab)} entries (max id {max(vocab.values())}), "
          f"{len(merges)} merges, Cangjie subset {len(subset)} lines")


if __name__ == "__main__":
    main()
