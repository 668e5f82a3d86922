package health

import "slices"

// Watermark is the highest block committed on at least k of the stores
// whose committed tips are given: the k-th highest tip. It is the backup
// confirmation the primary cannot give by itself. ok is false when fewer
// than k tips are known.
func Watermark(tips []uint64, k int) (uint64, bool) {
	if k <= 0 || len(tips) < k {
		return 0, false
	}
	s := slices.Clone(tips)
	slices.Sort(s)
	return s[len(s)-k], true
}
