package toolpin

import (
	"strings"
	"unicode"
)

// maxWordCells bounds the word diff's table (words of a × words of b);
// beyond it the strings are shown as one replacement.
const maxWordCells = 1 << 20

// WordDiff shows how b differs from a word by word, the way `git diff
// --word-diff` does: removed runs as [-…-], added runs as {+…+}, common
// words as they are. Equal strings give "".
func WordDiff(a, b string) string {
	if a == b {
		return ""
	}
	wa, wb := words(a), words(b)
	if len(wa)*len(wb) > maxWordCells {
		return "[-" + a + "-]{+" + b + "+}"
	}
	// lcs[i][j] is the longest common subsequence of wa[i:] and wb[j:].
	lcs := make([][]int32, len(wa)+1)
	for i := range lcs {
		lcs[i] = make([]int32, len(wb)+1)
	}
	for i := len(wa) - 1; i >= 0; i-- {
		for j := len(wb) - 1; j >= 0; j-- {
			if wa[i] == wb[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var out, del, ins strings.Builder
	flush := func() {
		if del.Len() > 0 {
			out.WriteString("[-" + del.String() + "-]")
			del.Reset()
		}
		if ins.Len() > 0 {
			out.WriteString("{+" + ins.String() + "+}")
			ins.Reset()
		}
	}
	i, j := 0, 0
	for i < len(wa) || j < len(wb) {
		switch {
		case i < len(wa) && j < len(wb) && wa[i] == wb[j]:
			flush()
			out.WriteString(wa[i])
			i++
			j++
		case j < len(wb) && (i == len(wa) || lcs[i][j+1] >= lcs[i+1][j]):
			ins.WriteString(wb[j])
			j++
		default:
			del.WriteString(wa[i])
			i++
		}
	}
	flush()
	return out.String()
}

// words splits s into words and the spaces between them, so that joining
// them gives s back.
func words(s string) []string {
	var out []string
	start, inSpace := 0, false
	for i, r := range s {
		sp := unicode.IsSpace(r)
		if i > start && sp != inSpace {
			out = append(out, s[start:i])
			start = i
		}
		inSpace = sp
	}
	if start < len(s) {
		out = append(out, s[start:])
	}
	return out
}
