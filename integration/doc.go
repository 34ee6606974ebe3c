// Package integration holds the end-to-end tests that run Stardust with real
// third-party programs: nginx and apache2 in front of it (webserver_test.go),
// the CometD and Faye Bayeux clients through Node (clients_test.go), and the
// Debian package installed on the machine and purged again (deb_test.go).
// The tests build on Unix systems only (process groups, rlimits, file
// locks): the programs they drive run there.
package integration
