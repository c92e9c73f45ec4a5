#!/usr/bin/perl

# The test harness itself (no MOM process needed): tokens crafted by
# MOM::Test::JWT verify with openssl, the SSE parser and chunked decoder
# cut streams correctly, and the conf templates render with exactly the
# variables the harness and the launcher provide.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Digest::SHA qw(hmac_sha256);
use MIME::Base64 qw(decode_base64url);
use MOM::Test;
use MOM::Test::JWT qw(make_jwt jwt_parts);
use MOM::Test::SSE;

# --- JWT -----------------------------------------------------------------

my $claims = {sub => 'alice', iat => 1, exp => 2};
my $hs = make_jwt('HS256', 'k', $claims);
my ($h, $c, $sig) = jwt_parts($hs);
is_deeply($h, {alg => 'HS256', typ => 'JWT'}, 'HS256 header');
is_deeply($c, $claims, 'claims round-trip');
my ($hb, $pb) = split /\./, $hs;
is($sig, hmac_sha256("$hb.$pb", 'k'), 'HS256 signature is HMAC-SHA256');
unlike($hs, qr/[+\/=]/, 'base64url without padding');
is((split /\./, make_jwt('none', undef, $claims), -1)[2], '',
   'alg none: empty signature');
($h) = jwt_parts(make_jwt('HS256', 'k', $claims, {alg => 'RS256'}));
is($h->{alg}, 'RS256', 'header override');

for my $alg (qw(RS256 ES256)) {
    my $keys = MOM::Test->new(jwt_alg => $alg);
    my $tok = make_jwt($alg, $keys->jwt_private_key, $claims);
    my ($hb2, $pb2, $sb2) = split /\./, $tok;
    my $raw = decode_base64url($sb2);
    is(length $raw, $alg eq 'RS256' ? 256 : 64, "$alg signature length");
    my $der = $alg eq 'RS256' ? $raw : raw_to_der($raw);
    my $d = $keys->dir;
    MOM::Test::write_file("$d/in", "$hb2.$pb2");
    MOM::Test::write_file("$d/sig", $der);
    is(MOM::Test::run_quiet('openssl', 'dgst', '-sha256', '-verify',
                            $keys->jwt_public_key, '-signature', "$d/sig",
                            "$d/in"), 0, "$alg signature verifies");
    MOM::Test::write_file("$d/in", "$hb2.$pb2" . 'x');
    isnt(MOM::Test::run_quiet('openssl', 'dgst', '-sha256', '-verify',
                              $keys->jwt_public_key, '-signature', "$d/sig",
                              "$d/in"), 0, "$alg: other input fails");
}

sub raw_to_der {
    my ($raw) = @_;
    my $der = '';
    for my $half (0, 1) {
        my $int = substr $raw, 32 * $half, 32;
        $int =~ s/^\x00+//;
        $int = "\x00$int" if ord($int) & 0x80;
        $der .= "\x02" . chr(length $int) . $int;
    }
    return "\x30" . chr(length $der) . $der;
}

# --- SSE parsing ---------------------------------------------------------

my $ev = MOM::Test::SSE::parse_event(
    "id: 7\ndata: {\"offset\":7}\n: note", 1);
is($ev->{id}, 7, 'event id');
is_deeply($ev->{json}, {offset => 7}, 'event data decoded');
is_deeply($ev->{comments}, ['note'], 'comment kept');
$ev = MOM::Test::SSE::parse_event("event: end\ndata: a\ndata: b", 1);
is($ev->{event}, 'end', 'event name');
is($ev->{data}, "a\nb", 'multi-line data joined');
is(MOM::Test::SSE::parse_event('retry: 3000', 1)->{retry}, 3000, 'retry');

is(MOM::Test::SSE::dechunk_all("3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"),
   'abcde', 'dechunk');

# Incremental decoding of a chunked stream split at every byte.
{
    my $body = "retry: 3000\n\nid: 1\ndata: x\n\n: ping\n\n";
    my $wire = '';
    for my $piece ("retry: 3000\n\n", "id: 1\nda", "ta: x\n\n: ping\n\n") {
        $wire .= sprintf("%x\r\n%s\r\n", length $piece, $piece);
    }
    my $s = bless {buf => '', body => '', events => [], head_done => 1,
                   chunked => 1, chunk_left => 0, status => 200},
        'MOM::Test::SSE';
    for my $byte (split //, $wire) {
        $s->{buf} .= $byte;
        $s->_decode;
    }
    my @evs = $s->pending_events;
    is(scalar @evs, 3, 'three blocks from a byte-split chunked stream');
    is($evs[0]{retry}, 3000, 'retry block');
    is($evs[1]{data}, 'x', 'data block');
    is_deeply($evs[2]{comments}, ['ping'], 'heartbeat block');
}

# --- templates -----------------------------------------------------------

{
    my $t = MOM::Test->new(nodes => 2, jwt_alg => 'RS256');
    $t->_render_momd(1);
    $t->_render_nginx(2);
    my $m = MOM::Test::read_file($t->node_dir(1) . '/momd.conf');
    like($m, qr/^socket = \S+\/momd\.sock$/m, 'momd.conf: socket');
    like($m, qr/^pbkdf2_iterations = 1000$/m, 'momd.conf: iterations');
    my @members = $m =~ /^member = (\d) 127\.0\.0\.1:\d+ 127\.0\.0\.1:\d+$/mg;
    is_deeply(\@members, [1, 2], 'momd.conf: one member line per node');
    unlike($m, qr/\@[A-Z_]+\@/, 'momd.conf: no placeholder left');
    my $n = MOM::Test::read_file($t->node_dir(2) . '/nginx.conf');
    like($n, qr/^\s*listen 127\.0\.0\.1:\d+;$/m, 'nginx.conf: listen');
    like($n, qr/mom_jwt_algorithm RS256;/, 'nginx.conf: algorithm');
    like($n, qr/mom_jwt_signing_key \S+jwt\.key;/, 'nginx.conf: signing key');
    like($n, qr/server unix:\S+node2\/momd\.sock;/, 'nginx.conf: upstream');
    unlike($n, qr/\@[A-Z_]+\@/, 'nginx.conf: no placeholder left');
    my $tmp_paths = () = $n =~ /_temp_path \S+\/node2\/tmp\//g;
    is($tmp_paths, 5, 'nginx.conf: every temp path under the prefix');
    eval { MOM::Test::render("$MOM::Test::ROOT/conf/nginx.conf.in",
                             $t->dir . '/x', {}) };
    like($@, qr/unknown template variable/, 'missing variable is an error');
}

# The launcher renders the same templates: it must name every variable.
{
    my $src = MOM::Test::read_file("$MOM::Test::ROOT/scripts/mom-cluster");
    for my $tpl (qw(nginx.conf.in momd.conf.in)) {
        my $text = MOM::Test::read_file("$MOM::Test::ROOT/conf/$tpl");
        my %vars = map { $_ => 1 } $text =~ /\@([A-Z][A-Z0-9_]*)\@/g;
        my @missing = grep { $src !~ /"$_=/ } sort keys %vars;
        ok(!@missing, "mom-cluster sets every variable of $tpl")
            or diag("missing: @missing");
    }
}

done_testing;
