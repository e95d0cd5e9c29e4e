package bench

import (
	"os"
	"path/filepath"
	"strings"
)

// describeFS names the filesystem dir is on and, for ext4, whether it keeps
// a journal: without one, the kernel checks every recently freed inode it
// passes when it allocates one (ext4's recently_deleted), so a ClickHouse
// that creates and removes the many files of its parts spends much of its
// CPU in the kernel. Empty when it cannot tell.
func describeFS(dir string) string {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return ""
	}
	if r, err := filepath.EvalSymlinks(abs); err == nil {
		abs = r
	}
	mountinfo, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return ""
	}
	return describeFSFrom(abs, string(mountinfo), "/sys")
}

// describeFSFrom is describeFS over a mountinfo text and a sysfs root.
func describeFSFrom(path, mountinfo, sys string) string {
	var best struct{ point, devno, fstype, source string }
	for _, line := range strings.Split(mountinfo, "\n") {
		// id parent major:minor root mount-point options [optional...] - fstype source super-options
		pre, post, ok := strings.Cut(line, " - ")
		f, g := strings.Fields(pre), strings.Fields(post)
		if !ok || len(f) < 5 || len(g) < 2 {
			continue
		}
		point := unescapeMount(f[4])
		if !within(path, point) || len(point) < len(best.point) {
			continue
		}
		best.point, best.devno, best.fstype, best.source = point, f[2], g[0], unescapeMount(g[1])
	}
	if best.fstype == "" {
		return ""
	}
	desc := best.fstype + " (" + best.source + " at " + best.point + ")"
	if best.fstype != "ext4" {
		return desc
	}
	dev, err := os.Readlink(filepath.Join(sys, "dev", "block", best.devno))
	if err != nil {
		return desc
	}
	j, err := os.ReadFile(filepath.Join(sys, "fs", "ext4", filepath.Base(dev), "journal_task"))
	switch {
	case err != nil:
		return desc
	case strings.TrimSpace(string(j)) == "<none>":
		return "ext4 without a journal (" + best.source + " at " + best.point + ")"
	default:
		return "ext4 with a journal (" + best.source + " at " + best.point + ")"
	}
}

// within reports whether path is point or below it.
func within(path, point string) bool {
	if point == "/" || path == point {
		return true
	}
	return strings.HasPrefix(path, point+"/")
}

// unescapeMount undoes mountinfo's octal escapes of space, tab, newline
// and backslash.
var unescapeMount = strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`).Replace
