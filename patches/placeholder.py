"""Put style vectors where a placeholder token stands in a prompt tokenized by ComfyUI
(docs/design/comfyui.md 5.2, docs/design/inst.md 4.4).

ComfyUI's tokenizer returns, per text encoder, 77-token chunks of (token, weight, word id): a start
token, up to 75 prompt tokens, an end token, padding. Token entries may be vectors instead of ids;
ComfyUI's CLIP splices them into the token embeddings before the position embeddings, where InST
and textual inversion put theirs. Each placeholder becomes its own group of rows and the groups
are laid out in chunks again, so a prompt gets exactly the chunks ComfyUI gives the same vectors
written as an `embedding:` word: weights, several placeholders and long prompts work as there.
"""

import numbers
from dataclasses import dataclass

MAX_WORD = 8  # ComfyUI's tokenizer moves a group shorter than this to the next chunk whole


@dataclass(frozen=True)
class ChunkLayout:
    """Special tokens and chunk length of a text encoder, read from how it tokenizes ''."""

    start: int
    end: int
    pad: int
    length: int

    @classmethod
    def of_empty_prompt(cls, chunks):
        (chunk,) = chunks
        return cls(start=chunk[0][0], end=chunk[1][0], pad=chunk[-1][0], length=len(chunk))


def placeholder_token(chunks, layout):
    """The token ids of a placeholder tokenized alone (its chunks, as for a prompt)."""
    special = (layout.start, layout.end, layout.pad)
    return [e[0] for chunk in chunks for e in chunk if not isinstance(e[0], numbers.Integral) or e[0] not in special]


def replace_placeholder(chunks, token, vectors, layout):
    """`chunks` (tokenized with return_word_ids=True) with every `token` id replaced by the rows of
    `vectors` [n, width], each keeping the placeholder's weight. Returns (chunks of (token,
    weight) pairs, how many placeholders were replaced)."""
    groups, count = [], 0
    for group in _groups(chunks):
        words = []
        for entry, weight in group:
            if isinstance(entry, numbers.Integral) and entry == token:
                groups += [words] if words else []
                groups.append([(row, weight) for row in vectors])
                words, count = [], count + 1
            else:
                words.append((entry, weight))
        groups += [words] if words else []
    return _chunked(groups, layout), count


def _groups(chunks):
    """The prompt's groups (ComfyUI's word ids > 0; a group may span chunks), special tokens left out."""
    groups, last = [], None
    for chunk in chunks:
        for entry, weight, word in chunk:
            if word == 0:
                continue
            if word != last:
                groups.append([])
                last = word
            groups[-1].append((entry, weight))
    return groups


def _chunked(groups, layout):
    """ComfyUI's chunking of token groups: a group that does not fit moves to a new chunk, unless
    it is MAX_WORD tokens or longer, which is split; every chunk is closed and padded."""
    chunks, chunk = [], [(layout.start, 1.0)]
    for group in groups:
        large = len(group) >= MAX_WORD
        while group:
            room = layout.length - 1 - len(chunk)
            if len(group) <= room:
                chunk += group
                break
            if large:
                chunk += group[:room]
                group = group[room:]
                chunk.append((layout.end, 1.0))
            else:
                chunk += [(layout.end, 1.0)] + [(layout.pad, 1.0)] * room
            chunks.append(chunk)
            chunk = [(layout.start, 1.0)]
    chunk.append((layout.end, 1.0))
    chunks.append(chunk + [(layout.pad, 1.0)] * (layout.length - len(chunk)))
    return chunks
