#!/usr/bin/perl

# Passwords are stored as PBKDF2-HMAC-SHA256 hashes with a per-user salt and
# the configured iteration count, never in plaintext: read the real SQLite
# file (and its WAL) with the sqlite3 CLI and as raw bytes.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use MOM::Test;

my $t = MOM::Test->new(pbkdf2_iterations => 1000);
our $TODO = $t->todo;
$t->start;

my $pw = 'Plain-Text-Pa55word-7781';
for my $u (qw(alice bob)) {
    my $r = $t->post('/auth/register', {username => $u, password => $pw});
    is($r->{status}, 200, "register $u");
}
my $r = $t->post('/auth/login', {username => 'alice', password => $pw});
is($r->{status}, 200, 'login with the password');

my $db = $t->db_path;
ok(-f $db, 'mom.db exists')
    or diag("files: " . join ' ', glob $t->node_dir . '/*');

my $dump = MOM::Test::sqlite($db, '.dump');
ok(length $dump, 'sqlite3 can read the database while momd runs');
unlike($dump, qr/\Q$pw\E/, 'no plaintext password in the database');

my @hashes = $dump =~ /(pbkdf2_sha256\$[^'",)\s]+)/g;
is(scalar @hashes, 2, 'one pbkdf2_sha256$... hash per user')
    or diag(substr $dump, 0, 2000);
for my $h (@hashes) {
    like($h, qr/^pbkdf2_sha256\$1000\$[^\$]{8,}\$[^\$]{32,}$/,
         'pbkdf2_sha256$<iterations>$<salt>$<hash>, configured iterations');
}
isnt($hashes[0], $hashes[1], 'same password, different hashes (salt)')
    if @hashes == 2;
my @salts = map { (split /\$/)[2] } @hashes;
isnt($salts[0], $salts[1], 'per-user salts differ') if @salts == 2;

# Not in any byte on disk either (database, WAL, logs).
for my $f (glob($t->node_dir . '/mom.db*'), $t->momd_log, $t->error_log) {
    my $bytes = MOM::Test::read_file_maybe($f);
    unlike($bytes, qr/\Q$pw\E/,
           "no plaintext password in " . ($f =~ s{.*/}{}r));
}

$t->check_logs;
done_testing;
