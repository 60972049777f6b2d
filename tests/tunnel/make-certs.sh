#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# tests/tunnel/make-certs.sh DIR: the certificates of a loopback control plane, made with
# openssl in DIR (used by tests/tunnel/run.sh and tests/bench/run-bench-tunnel.sh):
#   ca.pem, ca.key          a CA (P-256, 2 days)
#   server.pem, server.key  a server certificate for 127.0.0.1 and localhost, signed by it
#   other.pem, other.key    a second CA that nobody trusts
# Exit status: 0, or 1 when openssl failed.
set -eu
cd "$1"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=tunnel-test-ca \
	-keyout ca.key -out ca.pem 2>/dev/null
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=other-ca \
	-keyout other.key -out other.pem 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=127.0.0.1 \
	-keyout server.key -out server.csr 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >ext.cnf
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile ext.cnf \
	-out server.pem 2>/dev/null
