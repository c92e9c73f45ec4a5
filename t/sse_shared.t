#!/usr/bin/perl

# Shared streams (docs/architecture.md, "Shared streams"): an nginx worker
# reads each event of a topic once from momd and writes it to each of its
# subscribers of that topic.
#
# 1. momd: OP_MUTE on a subscription stops its message events and keeps
#    its heartbeats and final event; the 200 REPLY says stream_buffer.
# 2. Many subscribers in one worker get identical, complete streams, and
#    momd writes each event once per worker, not once per subscriber
#    (write system calls of momd, /proc/PID/io); an event larger than the
#    shared stream's read buffer arrives whole.
# 3. Subscribers joining mid-stream from old offsets while messages are
#    published at full speed get every message from there, once, in order
#    (replay on their own stream, then the hand-over).
# 4. A subscriber that stops reading is ended as too slow at momd's
#    sse_buffer, without holding up the others; it resumes without a gap.
# 5. The shared stream failing (momd cuts the stalled worker's shared
#    stream off) ends every subscriber on it with "subscriber too slow",
#    each with a gapless prefix, and they resume with Last-Event-ID.
# 6. Deleting the topic ends every subscriber with "topic deleted".
# 7. Token expiry ends one subscriber of the shared stream and not the
#    others; heartbeats go on.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Socket qw(SOL_SOCKET SO_RCVBUF);
use Time::HiRes qw(time sleep);
use MOM::Test;
use MOM::Test::Frame;

my $t = MOM::Test->new(workers => 1, location_extra => 'mom_heartbeat 1s;',
                       momd_extra => 'sse_buffer = 65536',
                       listen_options => ' sndbuf=16k',
                       synchronous => 'normal');
our $TODO = $t->todo('sse');
$t->start;
ok($t->ok, 'node up') or BAIL_OUT('the node did not start');

my $tok = $t->user_token('alice');
my $dir = $t->dir;

sub ids { [map { $_->{id} } @_] }

# Reads the streams side by side (each keeps up): n data events of each,
# or what came before the timeout or its end.
sub read_all {
    my ($subs, $n, $timeout) = @_;
    my @got = map { [] } @$subs;
    my $deadline = time + $timeout;
    while (time < $deadline) {
        my $busy = 0;
        for my $i (0 .. $#$subs) {
            my $g = $got[$i];
            next if @$g >= $n || (@$g && ($g->[-1]{event} // '') eq 'end');
            $busy++;
            for (1 .. 8) {    # then the next one's turn
                my $ev = $subs->[$i]->next_data(timeout => 0.002) // last;
                push @$g, $ev;
                last if @$g >= $n || ($ev->{event} // '') eq 'end';
            }
        }
        last unless $busy;
    }
    return @got;
}

sub create {
    my ($name) = @_;
    is($t->post('/messages/topics', {name => $name}, token => $tok)->{status},
       200, "topic $name created");
}

sub publish {
    my ($name, $content) = @_;
    return $t->post("/messages/messages/topic/$name", {content => $content},
                    token => $tok)->{status};
}

# momd's write system calls so far (write, writev, pwrite...)
sub momd_writes {
    my ($io) = MOM::Test::read_file('/proc/' . $t->momd_pid . '/io')
        =~ /^syscw:\s*(\d+)/m;
    return $io;
}

# --- 1. momd: OP_MUTE -------------------------------------------------------

create('m');
$t->sse_or_stop('/messages/messages/topic/m');
{
    my $c = MOM::Test::Frame->new($t->socket_path);
    $c->request(op => 'OP_SUBSCRIBE', name => 'm', heartbeat_ms => 200);
    my $r = $c->response(timeout => 5);
    is($r && $r->{status}, 200, 'momd: subscribe 200');
    is($r && $r->{stream_buffer}, 65536,
       'momd: the REPLY says stream_buffer (sse_buffer)');
    my $retry = $c->response(timeout => 5);
    like($retry && $retry->{body}, qr/^retry: /, 'momd: retry first');
    is(publish('m', 1), 200, 'publish 1');
    $r = $c->response(timeout => 5);
    like($r && $r->{body}, qr/^id: 1\n/, 'momd: event 1 on the stream');
    $c->request(op => 'OP_MUTE');
    sleep 0.2;
    is(publish('m', 2), 200, 'publish 2');
    my @bodies = map { $_->{body} } $c->responses_for(1.5);
    ok(!grep({ /^id: / } @bodies), 'momd: no message event once muted');
    ok(scalar(grep { /^: ping/ } @bodies), 'momd: heartbeats go on');
    is($t->del('/messages/topics/m', token => $tok)->{status}, 200,
       'topic m deleted');
    my $end = $c->end(timeout => 5);
    like($end && $end->{body}, qr/topic deleted/,
         'momd: a muted stream still gets its final event');
    $c->disconnect;
}

# --- 2. many subscribers, one worker -----------------------------------------

my $N = 30;
create('fan');
my @subs = map { $t->sse('/messages/messages/topic/fan') } 1 .. $N;
is_deeply([map { $_->status } @subs], [(200) x $N], "$N streams open");
is(publish('fan', {n => 0}), 200, 'first message');
my @first = map { [$_->data_events(1, timeout => 10)] } @subs;
is_deeply([map { scalar @$_ } @first], [(1) x $N],
          'every subscriber has the first message');
sleep 0.3;    # the hand-overs

my $M = 100;
my $w0 = momd_writes();
for my $i (1 .. $M) {
    publish('fan', {n => $i, pad => 'x' x 50}) == 200 or last;
}
my $writes = momd_writes() - $w0;
my @got = map { [$_->data_events($M, timeout => 20)] } @subs;
my $want = [2 .. $M + 1];
my $same = 0;
for my $g (@got) {
    $same++ if join("\n", map { $_->{raw} } @$g)
               eq join("\n", map { $_->{raw} } @{$got[0]});
}
is_deeply([map { ids(@$_) } @got], [($want) x $N],
          "$N subscribers: ids 2..@{[$M + 1]}, no gap, no duplicate");
is($same, $N, 'identical streams, byte for byte');
# per publish: the reply and the WAL writes (~5), plus one event for the
# worker's shared stream; one stream per subscriber would be 30 more
cmp_ok($writes / $M, '<', 15,
       sprintf 'momd writes each event once, not once per subscriber '
       . '(%.1f write calls per publish)', $writes / $M);
# an event larger than the shared stream's 64 KiB read buffer (it grows)
is(publish('fan', {n => 'big', pad => 'h' x 100_000}), 200, 'a 100 KB message');
is(publish('fan', {n => 'after'}), 200, 'and a small one after it');
my @big = map { [$_->data_events(2, timeout => 20)] } @subs;
is_deeply([map { ids(@$_) } @big], [([$M + 2, $M + 3]) x $N],
          'every subscriber gets both');
is(scalar(grep { length($_->[0]{json}{content}{pad} // '') == 100_000
                 && $_->[1]{json}{content}{n} eq 'after' } @big), $N,
   'the big one whole, then the next');
$_->disconnect for @subs;

# --- 3. late joiners during a full-speed publish -----------------------------

create('late');
my $TOTAL = 800;
my @early = map { $t->sse('/messages/messages/topic/late') } 1 .. 5;
my $pub = $t->spawn(sub {
    for my $i (1 .. $TOTAL) {
        my $st = publish('late', {i => $i});
        die "publish $i: $st\n" unless $st == 200;
        MOM::Test::write_file("$dir/late.tmp", $i);
        rename "$dir/late.tmp", "$dir/late.progress";
    }
});
my @joiners;
for my $at (100, 300, 500) {
    my $deadline = time + 60;
    sleep 0.01 while time < $deadline
        && (MOM::Test::read_file_maybe("$dir/late.progress") || 0) < $at;
    # from far back (replayed), from just behind, from the start
    for my $from (0, $at - 90, $at - 5) {
        push @joiners, [$from, $t->sse('/messages/messages/topic/late',
                                       last_event_id => $from)];
    }
}
is_deeply([$t->wait_children(120, $pub)], [0], "$TOTAL messages published");
my @early_got = map { [$_->data_events($TOTAL, timeout => 30)] } @early;
is_deeply([map { ids(@$_) } @early_got], [([1 .. $TOTAL]) x 5],
          'early subscribers: everything once, in order');
for my $j (@joiners) {
    my ($from, $s) = @$j;
    my @evs = $s->data_events($TOTAL - $from, timeout => 30);
    is_deeply(ids(@evs), [$from + 1 .. $TOTAL],
              "joined mid-stream from $from: every later message once");
    $s->disconnect;
}
$_->disconnect for @early;

# --- 4. a slow subscriber ---------------------------------------------------

create('slow');
my $slow = $t->sse('/messages/messages/topic/slow?last_event_id=0',
                   rcvbuf => 4096);
my @fast = map { $t->sse('/messages/messages/topic/slow') } 1 .. 5;
is(publish('slow', 'warm-up'), 200, 'warm-up message');
$_->data_events(1, timeout => 10) for @fast;
sleep 0.3;
my $payload = 'p' x 8000;
my $BIG = 150;    # 1.2 MB through a 64 KiB sse_buffer
# ~0.2 MB/s: a pace the Perl readers (JSON::PP) of the others keep up with
$pub = $t->spawn(sub {
    for my $i (1 .. $BIG) {
        my $st = publish('slow', {i => $i, p => $payload});
        die "publish $i: $st\n" unless $st == 200;
        sleep 0.04;
    }
});
my @fast_got = read_all(\@fast, $BIG, 60);
is_deeply([map { ids(@$_) } @fast_got], [([2 .. $BIG + 1]) x 5],
          'the others get everything while one subscriber does not read');
is_deeply([$t->wait_children(60, $pub)], [0], 'publishing is not held up');
$_->disconnect for @fast;
setsockopt($slow->sock, SOL_SOCKET, SO_RCVBUF, 1 << 20);
my (@slow_got, $end);
my $deadline = time + 30;
while (time < $deadline) {
    my $ev = $slow->next_data(timeout => $deadline - time) // last;
    if (($ev->{event} // '') eq 'end') { $end = $ev; last }
    push @slow_got, $ev;
}
is($end && $end->{json} && $end->{json}{reason}, 'subscriber too slow',
   'the slow one is cut off with "subscriber too slow"');
cmp_ok(scalar @slow_got, '<', $BIG + 1, 'before receiving everything');
is_deeply(ids(@slow_got), [1 .. scalar @slow_got], 'what it got has no gap');
ok($slow->wait_closed(5), 'slow stream closed');
$slow->disconnect;
my $from = @slow_got ? $slow_got[-1]{id} : 0;
my $again = $t->sse('/messages/messages/topic/slow', last_event_id => $from);
is_deeply(ids($again->data_events($BIG + 1 - $from, timeout => 30)),
          [$from + 1 .. $BIG + 1], 'it resumes with Last-Event-ID, no gap');
$again->disconnect;

# --- 5. the shared stream fails ----------------------------------------------

create('cut');
my @cut = map { $t->sse('/messages/messages/topic/cut') } 1 .. 8;
is(publish('cut', 'first'), 200, 'first message');
$_->data_events(1, timeout => 10) for @cut;
sleep 0.3;
# Stall the worker; publish straight to momd: the worker's shared stream
# falls 1.2 MB behind, beyond momd's sse_buffer, and momd cuts it off.
my ($worker) = MOM::Test::child_pids($t->nginx_pid);
ok($worker && kill('STOP', $worker), 'nginx worker stopped');
my $c = MOM::Test::Frame->new($t->socket_path);
my $published = 1;
for my $i (1 .. $BIG) {
    $c->request(op => 'OP_PUBLISH', name => 'cut', user => 'alice',
                content => qq({"i":$i,"p":"$payload"}));
    my $r = $c->response(timeout => 10);
    last unless $r && $r->{status} == 200;
    $published++;
}
$c->disconnect;
is($published, $BIG + 1, 'published to momd while the worker stood still');
kill 'CONT', $worker;
my $ends = 0;
my $gapless = 0;
my @cut_got = read_all(\@cut, $BIG + 10, 30);
for my $i (0 .. $#cut) {
    my @evs = @{$cut_got[$i]};
    my $e = @evs && ($evs[-1]{event} // '') eq 'end' ? pop @evs : undef;
    $ends++ if $e && $e->{json} && $e->{json}{reason} eq 'subscriber too slow'
               && $cut[$i]->wait_closed(5);
    $gapless++ if join(',', @{ids(@evs)}) eq join(',', 2 .. @evs + 1);
    my $last = @evs ? $evs[-1]{id} : 1;
    $cut[$i]->disconnect;
    my $r = $t->sse('/messages/messages/topic/cut', last_event_id => $last);
    is_deeply(ids($r->data_events($published - $last, timeout => 30)),
              [$last + 1 .. $published], "resumes from $last, no gap");
    $r->disconnect;
}
is($ends, 8, 'every subscriber of the shared stream ended, cleanly, '
   . 'with "subscriber too slow"');
is($gapless, 8, 'each with a gapless prefix');

# --- 6. topic deleted --------------------------------------------------------

create('gone');
my @gone = map { $t->sse('/messages/messages/topic/gone') } 1 .. 6;
is(publish('gone', 1), 200, 'a message');
$_->data_events(1, timeout => 10) for @gone;
sleep 0.3;
is($t->del('/messages/topics/gone', token => $tok)->{status}, 200,
   'topic deleted');
my $deleted = 0;
for my $s (@gone) {
    my $e;
    while (my $ev = $s->next_block(timeout => 5)) {
        if (($ev->{event} // '') eq 'end') { $e = $ev; last }
    }
    $deleted++ if $e && $e->{json}{reason} eq 'topic deleted'
                  && $s->wait_closed(5);
    $s->disconnect;
}
is($deleted, 6, 'every subscriber ends with "topic deleted"');

# --- 7. token expiry and heartbeats on the shared stream ----------------------

create('exp');
my $short = $t->jwt({sub => 'alice', iat => int(time),
                      exp => int(time) + 3});
my $expiring = $t->sse('/messages/messages/topic/exp', token => $short);
my $staying = $t->sse('/messages/messages/topic/exp');
is($expiring->status, 200, 'a stream with a 3 s token');
is(publish('exp', 1), 200, 'a message');
$_->data_events(1, timeout => 10) for $expiring, $staying;
# both are on the shared stream now; publish on past the expiry
my (@exp_got, $exp_end);
my $t0 = time;
for my $i (2 .. 40) {
    publish('exp', $i);
    sleep 0.1;
    while (!$exp_end && (my $ev = $expiring->next_data(timeout => 0.01))) {
        if (($ev->{event} // '') eq 'end') { $exp_end = $ev; last }
        push @exp_got, $ev;
    }
}
is($exp_end && $exp_end->{json} && $exp_end->{json}{reason}, 'token expired',
   'a subscriber on the shared stream ends when its token expires');
my $exp_at = $exp_end ? $exp_end->{t} - $t0 : 99;
ok($exp_at > 1 && $exp_at < 5, sprintf 'at its expiry (%.1f s)', $exp_at);
is_deeply(ids(@exp_got), [2 .. @exp_got + 1], 'gapless until then');
ok($expiring->wait_closed(3), 'its stream closed');
$expiring->disconnect;
my @stay = $staying->data_events(39, timeout => 10);
is_deeply(ids(@stay), [2 .. 40], 'the other one goes on');
# heartbeats (1 s) keep coming on the shared stream's subscribers
my @pings;
my $dl = time + 2.5;
while (time < $dl) {
    my $b = $staying->next_block(timeout => $dl - time) // last;
    push @pings, $b if grep { /^ping/ } @{$b->{comments}};
}
cmp_ok(scalar @pings, '>=', 1, 'heartbeats go on ('
       . scalar(@pings) . ' in 2.5 s)');
$staying->disconnect;

$t->check_logs;
done_testing;
