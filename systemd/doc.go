// Package systemd holds no Go code: this directory ships the systemd units
// that run Remuda's production runner, and this file exists so that Go
// accepts the tests beside them.
//
//	server.service         the master and its workers, Type=notify, sandboxed
//	server.socket          the listening sockets, handed over in LISTEN_FDS
//	notify-reload.conf     a drop-in for systemd >= 253 (Type=notify-reload)
//	server-flush.service   server flushexpiredtokens, once...
//	server-flush.timer     ...a day
//
// README.md explains how to install and operate them. units_test.go runs
// systemd-analyze verify and security on them (the overall exposure of each
// service must stay at or below 1.5) and checks that no required directive
// goes missing; it needs systemd-analyze, from Debian's systemd package, and
// fails without it.
package systemd
