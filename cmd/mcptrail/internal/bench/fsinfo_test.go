package bench

import (
	"os"
	"path/filepath"
	"testing"
)

func TestDescribeFS(t *testing.T) {
	sys := t.TempDir()
	for dev, journal := range map[string]string{"vda": "<none>\n", "loop0": "8851\n"} {
		if err := os.MkdirAll(filepath.Join(sys, "fs", "ext4", dev), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(sys, "fs", "ext4", dev, "journal_task"), []byte(journal), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(sys, "dev", "block"), 0o755); err != nil {
		t.Fatal(err)
	}
	for devno, dev := range map[string]string{"254:0": "vda", "7:0": "loop0"} {
		if err := os.Symlink("../../devices/virtual/block/"+dev, filepath.Join(sys, "dev", "block", devno)); err != nil {
			t.Fatal(err)
		}
	}
	const mountinfo = `22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw,discard
30 22 0:25 / /tmp/ram rw - tmpfs tmpfs rw
31 22 7:0 / /mnt/with\040space rw,relatime shared:2 - ext4 /dev/loop0 rw
32 22 7:1 / /mnt/other rw - ext4 /dev/loop1 rw
`
	for _, tc := range []struct{ path, want string }{
		{"/work/data", "ext4 without a journal (/dev/vda at /)"},
		{"/tmp/ram/ch", "tmpfs (tmpfs at /tmp/ram)"},
		{"/tmp/ramp", "ext4 without a journal (/dev/vda at /)"},
		{"/mnt/with space/ch/data", "ext4 with a journal (/dev/loop0 at /mnt/with space)"},
		{"/mnt/other/x", "ext4 (/dev/loop1 at /mnt/other)"}, // no sysfs entry: cannot tell
	} {
		if got := describeFSFrom(tc.path, mountinfo, sys); got != tc.want {
			t.Errorf("describeFSFrom(%q) = %q, want %q", tc.path, got, tc.want)
		}
	}
	if got := describeFSFrom("/x", "garbage\n", sys); got != "" {
		t.Errorf("describeFSFrom on garbage = %q, want empty", got)
	}
	if got := describeFS(t.TempDir()); got == "" {
		t.Error("describeFS(a temp dir) is empty on this machine")
	}
}
