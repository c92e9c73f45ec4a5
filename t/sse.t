#!/usr/bin/perl

# Server-Sent Events on one node: headers, the retry hint, live delivery
# (each event as soon as it is published), resume after the Last-Event-ID
# header or ?last_event_id= with no gap and no duplicate while a publisher
# is busy, last_event_id=0 full replay, heartbeat comments, the final
# event when the topic is deleted, 404 JSON for an unknown topic, and
# clients that disconnect leaving nothing behind in momd.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use MOM::Test;

my $t = MOM::Test->new(location_extra => 'mom_heartbeat 1s;');
our $TODO = $t->todo('sse');
$t->start;

my $tok = $t->user_token('alice');
ok($tok, 'logged in');
is($t->post('/messages/topics', {name => 'live'}, token => $tok)->{status},
   200, 'topic created');
$t->sse_or_stop('/messages/messages/topic/live');

sub publish {
    my ($topic, $content) = @_;
    my $r = $t->post("/messages/messages/topic/$topic", {content => $content},
                     token => $tok);
    return $r->{status} == 200 ? $r->{json}{offset} : undef;
}

sub ids { [map { $_->{id} } @_] }

# --- headers, retry, live delivery ---------------------------------------

my $s = $t->sse('/messages/messages/topic/live');
is($s->status, 200, 'SSE: 200');
like($s->header('content-type') // '', qr{^text/event-stream},
     'Content-Type: text/event-stream');
like($s->header('cache-control') // '', qr/no-cache/,
     'Cache-Control: no-cache');
ok(!defined $s->header('content-length'), 'no Content-Length');
like($s->header('transfer-encoding') // '', qr/chunked/i, 'chunked');

my $first = $s->next_block(timeout => 3);
is($first && $first->{retry}, 3000, 'first block: retry: 3000');

my @lat;
my @offsets;
for my $i (1 .. 5) {
    my $t0 = time;
    push @offsets, publish('live', {n => $i, text => "line\nbreak \x{2713}"});
    my $ev = $s->next_data(timeout => 3);
    push @lat, $ev ? $ev->{t} - $t0 : 99;
    is($ev && $ev->{id}, $offsets[-1], "live event $i: id = offset");
    is($ev && $ev->{json} && $ev->{json}{content}{n}, $i,
       "live event $i: content");
}
cmp_ok((sort { $b <=> $a } @lat)[0], '<', 0.5,
       'each event arrives < 0.5 s after its publish');
note('latencies: ' . join ' ', map { sprintf '%.1fms', $_ * 1000 } @lat);

# The event's data is exactly the history entry, on one line.
my $h = $t->get('/messages/messages/topic/live?since=4')->{json};
$s->disconnect;
$s = $t->sse('/messages/messages/topic/live?last_event_id=4');
my ($ev5) = $s->data_events(1, timeout => 3);
is_deeply($ev5 && $ev5->{json}, $h && $h->{messages}[0],
          'event data = the history entry (offset, sender, content, ts)');
is(scalar(split /\n/, $ev5 ? $ev5->{raw} : ''), 2,
   'an event is two lines: id and data (content newlines escaped)');
$s->disconnect;

# A stream without a position starts with what is published from now.
$s = $t->sse('/messages/messages/topic/live');
my @early = $s->data_events(1, timeout => 1);
is(scalar @early, 0, 'no replay without Last-Event-ID');
my $o6 = publish('live', 6);
my ($ev6) = $s->data_events(1, timeout => 3);
is($ev6 && $ev6->{id}, $o6, 'then live events');
$s->disconnect;

# --- resume ----------------------------------------------------------------

$s = $t->sse('/messages/messages/topic/live', last_event_id => 2);
is_deeply(ids($s->data_events(4, timeout => 3)), [3 .. 6],
          'Last-Event-ID: 2 -> 3..6');
my $o7 = publish('live', 7);
is_deeply(ids($s->data_events(1, timeout => 3)), [$o7], 'then live: 7');
$s->disconnect;

$s = $t->sse('/messages/messages/topic/live?last_event_id=5');
is_deeply(ids($s->data_events(2, timeout => 3)), [6, 7],
          '?last_event_id=5 -> 6, 7');
$s->disconnect;

$s = $t->sse('/messages/messages/topic/live?last_event_id=0');
is_deeply(ids($s->data_events(7, timeout => 3)), [1 .. 7],
          'last_event_id=0: full replay');
$s->disconnect;

# Header wins? Both given: the contract does not rank them; they agree here.
$s = $t->sse('/messages/messages/topic/live?last_event_id=6',
             last_event_id => 6);
is_deeply(ids($s->data_events(1, timeout => 3)), [7], 'header and query');
$s->disconnect;

# Resume while a publisher is busy: no gap, no duplicate at the switch
# from replay to live.
is($t->post('/messages/topics', {name => 'busy'}, token => $tok)->{status},
   200, 'busy topic created');
my $N = 600;
my $pub = $t->spawn(sub {
    for my $i (1 .. $N) {
        publish('busy', $i) // die "publish $i failed\n";
    }
});
my $deadline = time + 20;
sleep 0.02 while time < $deadline
    && @{$t->get('/messages/messages/topic/busy?since=150&limit=1')
         ->{json}{messages} // []} == 0;
my @subs = (
    [100, $t->sse('/messages/messages/topic/busy', last_event_id => 100)],
    [150, $t->sse('/messages/messages/topic/busy?last_event_id=150')],
    [0, $t->sse('/messages/messages/topic/busy?last_event_id=0')],
);
for my $sub (@subs) {
    my ($from, $ss) = @$sub;
    my @got = $ss->data_events($N - $from, timeout => 30);
    is_deeply(ids(@got), [$from + 1 .. $N],
              "resume at $from during publishing: " . ($from + 1)
              . "..$N, no gap, no duplicate");
    is_deeply([map { $_->{json}{content} } @got], [$from + 1 .. $N],
              "resume at $from: contents in order");
    $ss->disconnect;
}
is_deeply([$t->wait_children(30, $pub)], [0], 'publisher done');

# --- heartbeats ------------------------------------------------------------

$s = $t->sse('/messages/messages/topic/live');
my @pings;
my $t0 = time;
while (time - $t0 < 3.6) {
    my $b = $s->next_block(timeout => 3.6 - (time - $t0)) // last;
    push @pings, $b if grep { $_ eq 'ping' } @{$b->{comments}};
}
cmp_ok(scalar @pings, '>=', 2, 'mom_heartbeat 1s: ": ping" comments');
cmp_ok(scalar @pings, '<=', 5, 'and not a flood');
ok(!$s->closed, 'idle stream stays open');
$s->disconnect;

# --- topic deleted -----------------------------------------------------------

is($t->post('/messages/topics', {name => 'doomed'}, token => $tok)->{status},
   200, 'doomed topic created');
publish('doomed', 'x');
$s = $t->sse('/messages/messages/topic/doomed?last_event_id=0');
is_deeply(ids($s->data_events(1, timeout => 3)), [1], 'doomed: replay');
is($t->del('/messages/topics/doomed', token => $tok)->{status}, 200,
   'topic deleted');
my $end = $s->next_data(timeout => 3);
is($end && $end->{event}, 'end', 'final event: event: end');
is_deeply($end && $end->{json}, {reason => 'topic deleted'},
          'reason: topic deleted');
ok($s->wait_closed(3), 'stream closed after the final event');
$s->disconnect;

# --- errors are JSON, not streams -----------------------------------------

$s = $t->sse('/messages/messages/topic/nope');
is($s->status, 404, 'unknown topic: 404');
like($s->header('content-type') // '', qr{^application/json},
     'unknown topic: JSON');
ok($s->json && $s->json->{detail}, 'unknown topic: detail');
$s->disconnect;

$s = $t->sse('/messages/messages/topic/bad%20name');
is($s->status, 422, 'bad name: 422');
$s->disconnect;

$s = $t->sse('/messages/messages/topic/live?last_event_id=abc');
is($s->status, 422, 'last_event_id=abc: 422');
$s->disconnect;

# --- several subscribers, and disconnects ----------------------------------

my @many = map { $t->sse('/messages/messages/topic/live') } 1 .. 20;
my $o = publish('live', 'fanout');
my $all = 1;
for my $m (@many) {
    my ($e) = $m->data_events(1, timeout => 3);
    $all = 0 unless $e && $e->{id} == $o;
}
ok($all, '20 subscribers each get the event');
$_->disconnect for @many;

# Clients that come and go leave no connection behind in momd.
sub fds { my @f = glob '/proc/' . $t->momd_pid . '/fd/*'; scalar @f }
sleep 0.5;
my $fds_before = fds();
for (1 .. 100) {
    my $c = $t->sse('/messages/messages/topic/live');
    $c->next_block(timeout => 1);
    $c->disconnect;
}
publish('live', 'wake');    # a write also reveals dead subscribers
my $fds_after;
for (1 .. 30) {
    sleep 0.1;
    $fds_after = fds();
    last if $fds_after <= $fds_before + 5;
}
cmp_ok($fds_after, '<=', $fds_before + 5,
       "100 subscribe/disconnect cycles: momd fds $fds_before -> $fds_after");

# A normal request still works on the same node.
is($t->get('/messages/topics')->{status}, 200, 'node still answers');

$t->check_logs;
done_testing;
