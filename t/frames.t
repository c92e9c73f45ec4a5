#!/usr/bin/perl

# momd alone, through its Unix socket and the frame protocol (4-byte
# big-endian length + protobuf, docs/architecture.md): requests on one
# connection are answered in order, frames split at every byte work, bad
# frames (length 0, over max_frame_size, garbage protobuf, truncated)
# close that connection only; momd re-checks names; subscriptions answer
# REPLY then EVENT frames (retry hint, replay, live, heartbeats) and END
# with the reason (topic deleted, token expired).

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP;
use Time::HiRes qw(time sleep);
use MOM::Test;
use MOM::Test::Frame;

my $MAX = 131072;    # momd.conf minimum
my $t = MOM::Test->new(momd_extra => "max_frame_size = $MAX");
our $TODO = $t->todo;
ok($t->start_momd, 'momd started');
my $sock = $t->socket_path;
my $J = JSON::PP->new->utf8->canonical;

sub conn { MOM::Test::Frame->new($sock) }

sub call {
    my ($c, %f) = @_;
    $c->request(%f) or return undef;
    return $c->response(timeout => 5);
}

sub body {
    my ($r) = @_;
    return $r && length $r->{body} ? eval { $J->decode($r->{body}) } : undef;
}

my $c = conn();
ok($c, 'connected to momd.sock');
my $r = call($c, op => 'OP_LIST_TOPICS');
is($r && $r->{kind_name}, 'REPLY', 'list topics: a REPLY');
is($r && $r->{status}, 200, 'status 200');
is($r && $r->{body}, '{"topics":[]}', 'body {"topics":[]}');

$r = call($c, op => 'OP_REGISTER', name => 'alice', password => 'pw');
is($r && $r->{status}, 200, 'register');
is($r && $r->{body}, '{"message":"User registered"}', 'register body');
$r = call($c, op => 'OP_LOGIN', name => 'alice', password => 'pw');
is($r && $r->{status}, 200, 'login');
is($r && $r->{user}, 'alice', 'login: user set');
is($r && $r->{body}, '', 'login: empty body (the module signs)');
$r = call($c, op => 'OP_LOGIN', name => 'alice', password => 'nope');
is($r && $r->{status}, 401, 'login with a wrong password: 401');

$r = call($c, op => 'OP_CREATE_TOPIC', name => 't', user => 'alice');
is_deeply(body($r), {message => 'Topic created', name => 't'}, 'create topic');

# Pipelined requests: answered in order.
$c->send_raw(join '', map {
    MOM::Test::Frame::frame(MOM::Test::Frame::encode_request(
        op => 'OP_PUBLISH', name => 't', user => 'alice',
        content => $J->encode({n => $_})))
} 1 .. 50);
my @offs;
for (1 .. 50) {
    my $x = $c->response(timeout => 5) or last;
    push @offs, body($x) ? body($x)->{offset} : undef;
}
is_deeply(\@offs, [1 .. 50], '50 pipelined publishes answered in order');

# One frame written a byte at a time.
my $bytes = MOM::Test::Frame::frame(MOM::Test::Frame::encode_request(
    op => 'OP_HISTORY', name => 't', since => 48));
for my $b (split //, $bytes) {
    $c->send_raw($b);
    sleep 0.002;
}
$r = $c->response(timeout => 5);
is_deeply([map { $_->{offset} } @{body($r)->{messages} // []}], [49, 50],
          'frame split at every byte: history since 48');
is_deeply(body($r)->{messages}[0]{content}, {n => 49},
          'content stored and returned as JSON');

# momd re-checks names (the module is not its only client).
for my $bad ('bad name', 'x' x 129, '', "caf\xc3\xa9") {
    $r = call($c, op => 'OP_CREATE_TOPIC', name => $bad, user => 'alice');
    is($r && $r->{status}, 422, 'momd: bad topic name -> 422 ('
       . length($bad) . ' bytes)');
}

# --- bad frames close that connection only ---------------------------------

my %bad = (
    'length 0'              => pack('N', 0),
    'length over max'       => pack('N', $MAX + 1) . ('x' x 100),
    'length 4 GiB - 1'      => pack('N', 0xffffffff),
    'garbage protobuf'      => MOM::Test::Frame::frame("\xff" x 16),
    'bad wire type'         => MOM::Test::Frame::frame("\x0f\x01"),
    'truncated field'       => MOM::Test::Frame::frame("\x1a\x7fabc"),
);
for my $what (sort keys %bad) {
    my $b = conn();
    $b->send_raw($bad{$what});
    my $reply = $b->response(timeout => 3);
    ok(!$reply || $reply->{status} >= 400,
       "$what: no success reply");
    ok($b->closed_by_peer(3), "$what: momd closes the connection");
    $b->disconnect;
    $r = call($c, op => 'OP_LIST_TOPICS');
    is($r && $r->{status}, 200, "$what: other connections unaffected");
}

# A frame cut in the middle, then the client goes away.
for (1 .. 20) {
    my $b = conn();
    $b->send_raw(substr $bytes, 0, 7);
    $b->disconnect;
}
# Many connections at once, dropped without a word.
my @many = map { conn() } 1 .. 500;
is(scalar(grep { defined } @many), 500, '500 simultaneous connections');
$_->disconnect for grep { defined } @many;
$r = call($c, op => 'OP_LIST_TOPICS');
is($r && $r->{status}, 200, 'momd serves after abrupt disconnects');

# An unknown op is refused, not a crash.
$r = call($c, op => 99, name => 't');
ok(!$r || $r->{status} >= 400, 'unknown op: refused');
my $c2 = conn();
$r = call($c2, op => 'OP_LIST_TOPICS');
is($r && $r->{status}, 200, 'momd alive after an unknown op');

# Content is bounded by max_frame_size minus the 64 KiB a history page
# keeps for its framing: just under is stored, over is 422.
my $fits = $J->encode('y' x ($MAX - 65536 - 100));
$r = call($c2, op => 'OP_PUBLISH', name => 't', user => 'alice',
          content => $fits);
is($r && $r->{status}, 200, 'content under max_frame_size - 64 KiB: stored');
$r = call($c2, op => 'OP_PUBLISH', name => 't', user => 'alice',
          content => $J->encode('y' x ($MAX - 1000)));
is($r && $r->{status}, 422, 'content over it: 422');
$r = call($c2, op => 'OP_PUBLISH', name => 't', user => 'alice',
          content => qq([1,\n2]));
is($r && $r->{status}, 422, 'content with a raw newline: 422 (SSE safety)');

# --- subscriptions ---------------------------------------------------------

sub events {
    my ($s, $n, $timeout) = @_;
    my @ev;
    my $deadline = time + $timeout;
    while (@ev < $n) {
        my $f = $s->response(timeout => $deadline - time) or last;
        push @ev, $f;
        last if $f->{kind_name} eq 'END';
    }
    return @ev;
}

my $s = conn();
$r = call($s, op => 'OP_SUBSCRIBE', name => 't', since => 49, has_since => 1,
          heartbeat_ms => 300);
is($r && $r->{kind_name}, 'REPLY', 'subscribe: REPLY first');
is($r && $r->{status}, 200, 'subscribe: 200');
is($r && $r->{body}, '', 'subscribe: empty body');
my $text = join '', map { $_->{body} } events($s, 3, 2);
like($text, qr/^retry: 3000\n\n/, 'stream starts with retry: 3000');
like($text, qr/^id: 50\ndata: \{[^\n]*"offset":50[^\n]*\}\n\n/m,
     'replay: id 50 with its JSON on one data line');
like($text, qr/^id: 51\n/m, 'replay: id 51');

call($c, op => 'OP_PUBLISH', name => 't', user => 'alice', content => '"live"');
$text = '';
my $deadline = time + 3;
while (time < $deadline && $text !~ /^id: 52\n/m) {
    my $f = $s->response(timeout => $deadline - time) or last;
    $text .= $f->{body};
}
like($text, qr/^id: 52\ndata: [^\n]*"content":"live"/m, 'live event');

$text = '';
$deadline = time + 1.2;
while (time < $deadline) {
    my $f = $s->response(timeout => $deadline - time) or last;
    is($f->{kind_name}, 'EVENT', 'heartbeat frames are EVENTs');
    $text .= $f->{body};
}
my $pings = () = $text =~ /^: ping\n\n/mg;
ok($pings >= 2 && $pings <= 6, "heartbeat_ms 300: $pings pings in 1.2 s");

call($c, op => 'OP_DELETE_TOPIC', name => 't', user => 'alice');
my @end = grep { $_->{kind_name} eq 'END' } events($s, 20, 3);
is(scalar @end, 1, 'topic deleted: an END frame');
like($end[0] ? $end[0]{body} : '',
     qr/^event: end\ndata: \{"reason":"topic deleted"\}\n\n$/,
     'END: event: end, reason topic deleted');
ok($s->closed_by_peer(3), 'momd closes the stream after END');

$r = call(conn(), op => 'OP_SUBSCRIBE', name => 'nope');
is($r && $r->{status}, 404, 'subscribe to an unknown topic: 404 REPLY');

call($c, op => 'OP_CREATE_TOPIC', name => 'u', user => 'alice');
$s = conn();
$r = call($s, op => 'OP_SUBSCRIBE', name => 'u', token_exp => int(time) + 1);
is($r && $r->{status}, 200, 'subscribe with token_exp in 1 s');
@end = grep { $_->{kind_name} eq 'END' } events($s, 20, 4);
like($end[0] ? $end[0]{body} : '', qr/"reason":"token expired"/,
     'END at token expiry');

$r = call($c, op => 'OP_LIST_TOPICS');
is($r && $r->{status}, 200, 'momd still serving');

$t->check_logs;
done_testing;
