package systemd_test

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// maxExposure is the highest overall exposure level that
// systemd-analyze security may give a service of ours (0 safest, 10 worst).
const maxExposure = 1.5

// units are the unit files of this directory, as installed.
var units = []string{"server.service", "server.socket", "server-flush.service", "server-flush.timer"}

// services are the units whose sandbox systemd-analyze security scores.
var services = []string{"server.service", "server-flush.service"}

// installedBinary is the path every ExecStart= names.
const installedBinary = "/usr/local/bin/server"

// systemdAnalyze returns the path of systemd-analyze. Without it the test
// fails rather than skips: CI installs the systemd package, and a check
// that quietly stops running is no check.
func systemdAnalyze(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"systemd-analyze", "/usr/bin/systemd-analyze", "/bin/systemd-analyze"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	t.Fatal("systemd-analyze not found: install the systemd package (apt-get install systemd)")
	return ""
}

// stageUnits copies the units into a fresh directory and returns it.
//
// systemd-analyze verify fails a unit whose ExecStart= binary does not exist,
// and /usr/local/bin/server is not installed where tests run. So the copies
// start this test binary instead: a real executable, built by go test, and
// run with the very same arguments, so verify still parses and checks every
// argument, specifier and setting of the real line. Only the path differs.
func stageUnits(t *testing.T) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatalf("os.Executable: %v", err)
	}
	dir := t.TempDir()
	for _, name := range units {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		for _, key := range []string{"ExecStartPre=", "ExecStart="} {
			b = bytes.ReplaceAll(b, []byte(key+installedBinary+" "), []byte(key+self+" "))
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// run runs a command and returns its exit code, stdout and stderr.
func run(t *testing.T, dir string, name string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	// systemd-analyze pages and colours its output on a terminal only, but
	// say so anyway: the test parses it.
	cmd.Env = append(os.Environ(), "SYSTEMD_PAGER=cat", "SYSTEMD_COLORS=0", "LC_ALL=C.UTF-8")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		if _, ok := err.(*exec.ExitError); !ok {
			t.Fatalf("%s %s: %v", name, strings.Join(args, " "), err)
		}
	}
	return cmd.ProcessState.ExitCode(), out.String(), errb.String()
}

// linesNaming returns the lines of out that mention dir or one of our units.
func linesNaming(out, dir string) []string {
	var hits []string
	for line := range strings.Lines(out) {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if strings.Contains(line, dir) || slices.ContainsFunc(units, func(u string) bool { return strings.Contains(line, u) }) {
			hits = append(hits, line)
		}
	}
	return hits
}

func TestVerify(t *testing.T) {
	analyze := systemdAnalyze(t)
	dir := stageUnits(t)
	var paths []string
	for _, name := range units {
		paths = append(paths, filepath.Join(dir, name))
	}
	code, stdout, stderr := run(t, dir, analyze, append([]string{"verify"}, paths...)...)
	t.Logf("systemd-analyze verify %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(units, " "), code, stdout, stderr)
	if code != 0 {
		t.Errorf("systemd-analyze verify: got exit %d, want 0", code)
	}
	// verify exits 0 on most problems (an unknown key, a value it cannot
	// parse): it only warns, and systemd would ignore the line. The
	// warnings are what matter.
	if hits := linesNaming(stdout+stderr, dir); len(hits) > 0 {
		t.Errorf("systemd-analyze verify warns about our units:\n%s", strings.Join(hits, "\n"))
	}
}

// TestVerifyFailsWithoutBinary shows why stageUnits rewrites ExecStart=:
// verify checks that the binary exists.
func TestVerifyFailsWithoutBinary(t *testing.T) {
	analyze := systemdAnalyze(t)
	if _, err := os.Stat(installedBinary); err == nil {
		t.Skipf("%s is installed here", installedBinary)
	}
	dir := t.TempDir()
	b, err := os.ReadFile("server.service")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "server.service")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := run(t, dir, analyze, "verify", path)
	if code == 0 || !strings.Contains(stdout+stderr, installedBinary) {
		t.Errorf("verify of the unit as shipped, without %s: got exit %d and %q, want non-zero naming the binary", installedBinary, code, stdout+stderr)
	}
}

var exposureRE = regexp.MustCompile(`Overall exposure level for (\S+): ([0-9]+(?:\.[0-9]+)?)`)

func TestSecurityExposure(t *testing.T) {
	analyze := systemdAnalyze(t)
	dir := stageUnits(t)
	for _, name := range services {
		t.Run(name, func(t *testing.T) {
			code, stdout, stderr := run(t, dir, analyze, "security", "--offline=true", filepath.Join(dir, name))
			if code != 0 {
				t.Fatalf("systemd-analyze security --offline=true %s: exit %d\n%s%s", name, code, stdout, stderr)
			}
			m := exposureRE.FindStringSubmatch(stdout + stderr)
			if m == nil {
				t.Fatalf("systemd-analyze security %s: no overall exposure level in:\n%s%s", name, stdout, stderr)
			}
			if m[1] != name {
				t.Errorf("systemd-analyze security scored %s, want %s", m[1], name)
			}
			level, err := strconv.ParseFloat(m[2], 64)
			if err != nil {
				t.Fatalf("exposure level %q: %v", m[2], err)
			}
			t.Logf("overall exposure level for %s: %.1f (at most %.1f)", name, level, maxExposure)
			if level > maxExposure {
				t.Errorf("overall exposure level for %s: got %.1f, want at most %.1f\n%s", name, level, maxExposure, stdout)
			}
		})
	}
}

// TestNotifyReloadDropIn checks what notify-reload.conf says of itself: the
// installed systemd either knows Type=notify-reload (>= 253) and takes the
// drop-in without a warning, or ignores its Type= line with one (252).
func TestNotifyReloadDropIn(t *testing.T) {
	analyze := systemdAnalyze(t)
	_, version, _ := run(t, ".", analyze, "--version")
	var major int
	if _, err := fmt.Sscanf(version, "systemd %d", &major); err != nil {
		t.Fatalf("systemd-analyze --version: %q: %v", version, err)
	}
	dir := stageUnits(t)
	dropins := filepath.Join(dir, "server.service.d")
	if err := os.Mkdir(dropins, 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("notify-reload.conf")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dropins, "notify-reload.conf"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	// verify reads drop-ins from the directory of the unit it is given.
	code, stdout, stderr := run(t, dir, analyze, "verify", filepath.Join(dir, "server.service"))
	out := stdout + stderr
	t.Logf("systemd %d, verify with notify-reload.conf: exit %d\n%s", major, code, out)
	if code != 0 {
		t.Errorf("verify with notify-reload.conf: got exit %d, want 0", code)
	}
	ignored := strings.Contains(out, "Failed to parse service type, ignoring: notify-reload")
	switch {
	case major >= 253 && len(linesNaming(out, dir)) > 0:
		t.Errorf("systemd %d warns about notify-reload.conf:\n%s", major, out)
	case major < 253 && !ignored:
		t.Errorf("systemd %d: got %q, want it to ignore Type=notify-reload, as notify-reload.conf and README.md say", major, out)
	}
}

// unitFile is a parsed unit: for each "Section.Key", its assignments in order.
type unitFile map[string][]string

func parseUnit(t *testing.T, name string) unitFile {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u := unitFile{}
	section := ""
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[' && line[len(line)-1] == ']':
			section = line[1 : len(line)-1]
		case strings.HasSuffix(line, `\`):
			t.Fatalf("%s:%d: continuation lines are not supported by this test; keep each setting on one line", name, n)
		default:
			key, value, ok := strings.Cut(line, "=")
			if !ok {
				t.Fatalf("%s:%d: %q is not key=value", name, n, line)
			}
			k := section + "." + strings.TrimSpace(key)
			u[k] = append(u[k], strings.TrimSpace(value))
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return u
}

// lists are settings that add to a list, so every line counts; for the
// others the last assignment is the one systemd uses.
var lists = map[string]bool{"Service.SystemCallFilter": true, "Service.Environment": true, "Socket.ListenStream": true}

// directive is one setting a unit must keep.
type directive struct{ key, value string }

// sandbox is what every service of ours runs under (see README.md).
var sandbox = []directive{
	{"DynamicUser", "yes"},
	{"User", "server"},
	{"StateDirectory", "server"},
	{"UMask", "0077"},
	{"NoNewPrivileges", "yes"},
	{"CapabilityBoundingSet", ""},
	{"AmbientCapabilities", ""},
	{"ProtectSystem", "strict"},
	{"ProtectHome", "yes"},
	{"PrivateTmp", "yes"},
	{"PrivateDevices", "yes"},
	{"DevicePolicy", "closed"},
	{"PrivateUsers", "yes"},
	{"PrivateIPC", "yes"},
	{"PrivateMounts", "yes"},
	{"ProtectKernelTunables", "yes"},
	{"ProtectKernelModules", "yes"},
	{"ProtectKernelLogs", "yes"},
	{"ProtectControlGroups", "yes"},
	{"ProtectClock", "yes"},
	{"ProtectHostname", "yes"},
	{"ProtectProc", "invisible"},
	{"ProcSubset", "pid"},
	{"RestrictNamespaces", "yes"},
	{"RestrictRealtime", "yes"},
	{"RestrictSUIDSGID", "yes"},
	{"LockPersonality", "yes"},
	{"MemoryDenyWriteExecute", "yes"},
	{"RemoveIPC", "yes"},
	{"KeyringMode", "private"},
	{"SystemCallArchitectures", "native"},
	{"SystemCallFilter", "@system-service"},
	{"SystemCallFilter", "~@privileged @resources"},
	{"SystemCallErrorNumber", "EPERM"},
	{"RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"},
	{"IPAddressDeny", "any"},
	{"IPAddressAllow", "localhost"},
	{"EnvironmentFile", "-/etc/server/server.env"},
}

func TestDirectives(t *testing.T) {
	server := append([]directive{
		{"Type", "notify"},
		{"NotifyAccess", "all"},
		{"ExecReload", "/bin/kill -HUP $MAINPID"},
		{"PIDFile", "/run/server/server.pid"},
		{"WatchdogSec", "10s"},
		// Not mixed: after a USR2 systemd 252 SIGKILLs a mixed service at once
		// on stop (see server.service and README.md).
		{"KillMode", "control-group"},
		// Go exits 2 on a panic or SIGABRT, which RestartPreventExitStatus=2
		// would otherwise keep down.
		{"Environment", "GOTRACEBACK=crash"},
		{"TimeoutStopSec", "45s"},
		{"Restart", "on-failure"},
		{"RestartPreventExitStatus", "2"},
		{"RuntimeDirectory", "server"},
	}, sandbox...)
	flush := append([]directive{{"Type", "oneshot"}}, sandbox...)
	tests := []struct {
		unit    string
		section string
		want    []directive
	}{
		{"server.service", "Service", server},
		{"server-flush.service", "Service", flush},
		{"server.socket", "Socket", []directive{
			{"ListenStream", "127.0.0.1:8000"},
			{"ListenStream", "/run/server.sock"},
			{"FileDescriptorName", "http"},
			{"SocketUser", "root"},
			{"SocketGroup", "www-data"},
			{"SocketMode", "0660"},
			{"Service", "server.service"},
			{"IPAddressDeny", "any"},
			{"IPAddressAllow", "localhost"},
		}},
		{"server-flush.timer", "Timer", []directive{{"OnCalendar", "daily"}, {"Persistent", "true"}}},
	}
	for _, tt := range tests {
		t.Run(tt.unit, func(t *testing.T) {
			u := parseUnit(t, tt.unit)
			for _, d := range tt.want {
				k := tt.section + "." + d.key
				got := u[k]
				switch {
				case len(got) == 0:
					t.Errorf("%s: %s=%s missing", tt.unit, d.key, d.value)
				case lists[k] && !slices.Contains(got, d.value):
					t.Errorf("%s: %s: got %q, want a line %s=%s", tt.unit, d.key, got, d.key, d.value)
				case !lists[k] && got[len(got)-1] != d.value:
					t.Errorf("%s: %s: got %q (the last one wins), want %q", tt.unit, d.key, got[len(got)-1], d.value)
				}
			}
		})
	}
}

// TestServerCommandLine checks that the settings which refer to each other
// agree: the pidfile, the database in the state directory, and a stop
// timeout above the shutdown delay and the graceful timeout together.
func TestServerCommandLine(t *testing.T) {
	u := parseUnit(t, "server.service")
	starts := u["Service.ExecStart"]
	if len(starts) != 1 {
		t.Fatalf("server.service: got %d ExecStart= lines, want 1", len(starts))
	}
	args := strings.Fields(starts[0])
	if want := []string{installedBinary, "run", "--prod"}; len(args) < 3 || !slices.Equal(args[:3], want) {
		t.Errorf("ExecStart=%s: want it to start with %q", starts[0], strings.Join(want, " "))
	}
	flag := func(name string) string {
		i := slices.Index(args, name)
		if i < 0 || i+1 >= len(args) {
			return ""
		}
		return args[i+1]
	}
	if got, want := flag("--pidfile"), u["Service.PIDFile"]; len(want) == 0 || got != want[len(want)-1] {
		t.Errorf("ExecStart= --pidfile %q, PIDFile=%q: want the same file", got, want)
	}
	if got := flag("--pidfile"); !strings.HasPrefix(got, "/run/server/") {
		t.Errorf("--pidfile %q: want it in RuntimeDirectory=server (/run/server/), the only writable place in /run", got)
	}
	if got, want := flag("--database"), "sqlite:%S/server/server.db"; got != want {
		t.Errorf("--database %q: want %q, in StateDirectory=server, the only place the service can write", got, want)
	}
	// A production server never creates its database: the unit migrates it
	// before each start, the same database.
	pre := u["Service.ExecStartPre"]
	if want := installedBinary + " migrate --database " + flag("--database"); len(pre) != 1 || pre[0] != want {
		t.Errorf("ExecStartPre=%q: want one line %q, which creates and migrates the database", pre, want)
	}
	if slices.Contains(args, "--secret-key") {
		t.Errorf("ExecStart= carries --secret-key: a key on the command line shows in ps; use the environment file")
	}
	duration := func(name string, d time.Duration) time.Duration {
		if v := flag(name); v != "" {
			var err error
			if d, err = time.ParseDuration(v); err != nil {
				t.Fatalf("%s %q: %v", name, v, err)
			}
		}
		return d
	}
	// The server's defaults: 30s and 0 (off). A stop takes the delay, then
	// the drain.
	stopTakes := duration("--graceful-timeout", 30*time.Second) + duration("--shutdown-delay", 0)
	stop := u["Service.TimeoutStopSec"]
	if len(stop) == 0 {
		t.Fatal("server.service: TimeoutStopSec= missing")
	}
	d, err := systemdDuration(stop[len(stop)-1])
	if err != nil {
		t.Fatalf("TimeoutStopSec=%s: %v", stop[len(stop)-1], err)
	}
	if d <= stopTakes {
		t.Errorf("TimeoutStopSec=%s: want more than the shutdown delay and the graceful timeout (%s), or workers are SIGKILLed mid-request", stop[len(stop)-1], stopTakes)
	}
}

// TestSocketOutsideRuntimeDirectory pins down why the unix socket is
// /run/server.sock: systemd deletes server.service's RuntimeDirectory when
// the service stops, and chowns it (contents included) to the dynamic user
// when it starts; a socket that server.socket keeps open must live elsewhere.
func TestSocketOutsideRuntimeDirectory(t *testing.T) {
	svc, sock := parseUnit(t, "server.service"), parseUnit(t, "server.socket")
	for _, rd := range svc["Service.RuntimeDirectory"] {
		for _, dir := range strings.Fields(rd) {
			for _, l := range sock["Socket.ListenStream"] {
				if strings.HasPrefix(l, "/run/"+dir+"/") {
					t.Errorf("server.socket: ListenStream=%s is inside server.service's RuntimeDirectory=%s", l, dir)
				}
			}
		}
	}
}

// systemdDuration parses the time spans these units use ("45s", "2min",
// "1min 30s"); see systemd.time(7).
func systemdDuration(s string) (time.Duration, error) {
	var total time.Duration
	for _, f := range strings.Fields(s) {
		f = strings.Replace(f, "min", "m", 1)
		if _, err := strconv.Atoi(f); err == nil {
			f += "s" // a bare number is seconds
		}
		d, err := time.ParseDuration(f)
		if err != nil {
			return 0, err
		}
		total += d
	}
	return total, nil
}

// TestReadmeRunsTheUnits checks that README.md's "Without systemd as PID
// 1" block, which the README test runs in place of systemctl, runs what
// the units say: server.socket's sockets and fd name, server.service's
// ExecStartPre= and ExecStart= lines and Environment=, with its state and
// runtime directories. Only the install root and the sockets' variables
// differ, and they are put back here before comparing.
func TestReadmeRunsTheUnits(t *testing.T) {
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := strings.ReplaceAll(string(b), "\\\n", " ")
	var block string
	for _, part := range strings.Split(readme, "```sh\n")[1:] {
		part, _, _ = strings.Cut(part, "```")
		if strings.Contains(part, "systemd-socket-activate") {
			block = part
		}
	}
	if block == "" {
		t.Fatal("README.md: no sh block runs systemd-socket-activate")
	}
	svc, sock := parseUnit(t, "server.service"), parseUnit(t, "server.socket")
	last := func(u unitFile, k string) string {
		if v := u[k]; len(v) > 0 {
			return v[len(v)-1]
		}
		t.Fatalf("%s missing", k)
		return ""
	}
	// The README's variables, as the units spell them.
	state, runtime := "%S/"+last(svc, "Service.StateDirectory"), "/run/"+last(svc, "Service.RuntimeDirectory")
	norm := strings.NewReplacer(
		`"$DESTDIR`+installedBinary+`"`, installedBinary,
		`$state`, state, `$runtime`, runtime,
		`$PORT`, "8000", `$SOCKET`, "/run/server.sock",
		`"`, "",
	).Replace
	var lines []string
	for _, l := range strings.Split(block, "\n") {
		if i := strings.Index(l, " #"); i >= 0 {
			l = l[:i]
		}
		lines = append(lines, strings.Join(strings.Fields(norm(l)), " "))
	}
	text := strings.Join(lines, "\n")
	for _, want := range []string{
		"PORT=${PORT:-8000} SOCKET=${SOCKET:-/run/server.sock}",
		"state=$DESTDIR/var/lib/" + last(svc, "Service.StateDirectory") + " runtime=$DESTDIR/run/" + last(svc, "Service.RuntimeDirectory"),
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("README.md: no %q: the variables the check below relies on", want)
		}
	}
	var activate string
	for _, l := range lines {
		if strings.HasPrefix(l, "systemd-socket-activate ") {
			activate = l
		}
	}
	var wantArgs []string
	for _, l := range sock["Socket.ListenStream"] {
		wantArgs = append(wantArgs, "-l "+l)
	}
	wantArgs = append(wantArgs, "--fdname="+last(sock, "Socket.FileDescriptorName"))
	for _, e := range svc["Service.Environment"] {
		wantArgs = append(wantArgs, "-E "+e)
	}
	for _, a := range wantArgs {
		if !strings.Contains(activate, " "+a+" ") {
			t.Errorf("README.md: systemd-socket-activate line %q: want %q, as the units say", activate, a)
		}
	}
	if want := last(svc, "Service.ExecStart") + " &"; !strings.HasSuffix(activate, " "+want) {
		t.Errorf("README.md: systemd-socket-activate line %q: want it to end with ExecStart=%q", activate, want)
	}
	if want := last(svc, "Service.ExecStartPre"); !slices.Contains(lines, want) {
		t.Errorf("README.md: no line %q (ExecStartPre=) in:\n%s", want, text)
	}
}

// TestReadmeDropIns installs each ini block of README.md (the drop-ins it
// tells to write with systemctl edit) beside a staged server.service and
// runs systemd-analyze verify: a drop-in the page shows must not draw a
// warning.
func TestReadmeDropIns(t *testing.T) {
	analyze := systemdAnalyze(t)
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(string(b), "```ini\n")[1:]
	if len(parts) == 0 {
		t.Fatal("README.md: no ini block")
	}
	for i, part := range parts {
		dropIn, _, _ := strings.Cut(part, "```")
		t.Run(strconv.Itoa(i+1), func(t *testing.T) {
			dir := stageUnits(t)
			d := filepath.Join(dir, "server.service.d")
			if err := os.Mkdir(d, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(d, "readme.conf"), []byte(dropIn), 0o644); err != nil {
				t.Fatal(err)
			}
			code, stdout, stderr := run(t, dir, analyze, "verify", filepath.Join(dir, "server.service"))
			if hits := linesNaming(stdout+stderr, dir); code != 0 || len(hits) > 0 {
				t.Errorf("verify with README.md's drop-in\n%s: got exit %d and\n%s", dropIn, code, strings.Join(hits, "\n"))
			}
		})
	}
}
