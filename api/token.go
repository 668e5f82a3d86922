package api

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"storesync/merkle"
	"storesync/store"
)

// A page token is the position to continue from, bound to the query's tags so
// that a token cannot be replayed against another query:
// version (1) | block (8) | index (4) | hash of the sorted tags (8), base64url.
const tokenVersion = 1

// maxTokenIndex is the largest note index a token can carry: the store packs
// a position as block<<20 | index, so a larger index would read as a later
// block and skip notes. No issued token has one.
const maxTokenIndex = 1<<20 - 1

func tagsHash(tags []uint32) [8]byte {
	s := slices.Clone(tags)
	slices.Sort(s)
	buf := make([]byte, 0, 4*len(s))
	for _, t := range s {
		buf = binary.LittleEndian.AppendUint32(buf, t)
	}
	h := merkle.Sum(buf)
	return [8]byte(h[:8])
}

func pageToken(p store.Position, tags []uint32) string {
	b := make([]byte, 0, 21)
	b = append(b, tokenVersion)
	b = binary.LittleEndian.AppendUint64(b, p.Block)
	b = binary.LittleEndian.AppendUint32(b, p.Index)
	th := tagsHash(tags)
	b = append(b, th[:]...)
	return base64.RawURLEncoding.EncodeToString(b)
}

func parsePageToken(s string, tags []uint32) (store.Position, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) != 21 || b[0] != tokenVersion {
		return store.Position{}, errors.New("not a page token issued by this API")
	}
	if th := tagsHash(tags); [8]byte(b[13:21]) != th {
		return store.Position{}, fmt.Errorf("the token was issued for other tags")
	}
	p := store.Position{Block: binary.LittleEndian.Uint64(b[1:]), Index: binary.LittleEndian.Uint32(b[9:])}
	if p.Index > maxTokenIndex {
		return store.Position{}, errors.New("not a page token issued by this API")
	}
	return p, nil
}
