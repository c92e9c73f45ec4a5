#!/usr/bin/perl

# How SSE streams end: when the token expires (mom_topic_read_auth on, 3 s
# tokens) with the final event "token expired"; a subscriber that stops
# reading is cut off with "subscriber too slow" once momd's sse_buffer is
# full, and can resume with Last-Event-ID without a gap; momd stopping
# ends streams ("server shutting down" or a clean close); nginx stopping
# gracefully does not hang on open streams.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Socket qw(SOL_SOCKET SO_RCVBUF);
use Time::HiRes qw(time sleep);
use MOM::Test;

my $t = MOM::Test->new(
    jwt_lifetime   => '3s',
    location_extra => 'mom_topic_read_auth on; mom_heartbeat 1s;',
);
our $TODO = $t->todo('sse');
$t->start;

my $tok = $t->user_token('alice');
ok($tok, 'logged in');
is($t->post('/messages/topics', {name => 'x'}, token => $tok)->{status}, 200,
   'topic created');
$t->sse_or_stop('/messages/messages/topic/x', token => $tok);

# --- token expiry ----------------------------------------------------------

my $s = $t->sse('/messages/messages/topic/x');
is($s->status, 401, 'read auth on: stream without token -> 401');
$s->disconnect;
is($t->get('/messages/messages/topic/x')->{status}, 401,
   'read auth on: history without token -> 401');
is($t->get('/messages/topics')->{status}, 401,
   'read auth on: topic list without token -> 401');

$tok = $t->user_token('alice');       # a fresh 3 s token
my $t0 = time;
my $hdr = $t->sse('/messages/messages/topic/x', token => $tok);
my $qry = $t->sse("/messages/messages/topic/x?token=$tok");
is($hdr->status, 200, 'stream with token in the header');
is($qry->status, 200, 'stream with ?token=');
for my $c ([header => $hdr], [query => $qry]) {
    my ($how, $ss) = @$c;
    my $end = $ss->next_data(timeout => 8);
    is($end && $end->{event}, 'end',
       "$how: final event when the token expires");
    is_deeply($end && $end->{json}, {reason => 'token expired'},
              "$how: reason token expired");
    my $at = $end ? $end->{t} - $t0 : 99;
    ok($at > 1.5 && $at < 5, sprintf "$how: ends at expiry (%.1f s)", $at);
    ok($ss->wait_closed(3), "$how: stream closed");
    $ss->disconnect;
}

$t->check_logs;
$t->stop_all;

# --- slow subscriber ---------------------------------------------------------

# A deployment of its own: 30 min tokens, topic reads open, a 64 KiB
# sse_buffer, and a 16 KiB socket send buffer towards clients, so that what
# the path between momd and the client can hold stays small.
$t = MOM::Test->new(location_extra => 'mom_heartbeat 1s;',
                    momd_extra => 'sse_buffer = 65536',
                    listen_options => ' sndbuf=16k');
$t->start;
$tok = $t->user_token('alice');
is($t->post('/messages/topics', {name => 'x'}, token => $tok)->{status}, 200,
   'second deployment: topic created');
my $slow = $t->sse('/messages/messages/topic/x?last_event_id=0',
                   token => $tok, rcvbuf => 4096);
is($slow->status, 200, 'slow subscriber connected');
# ~4 MB through a 64 KiB sse_buffer: far beyond every buffer on the way.
# The publisher runs on; the subscriber stalls until 100 messages (800 KB)
# are published, then reads: momd has cut it off by then, and flushes what
# it queued, the final event last, for up to 5 s (its linger bound).
my $payload = 'p' x 8000;
my $dir = $t->dir;
my $pub = $t->spawn(sub {
    my $last = 0;
    for my $i (1 .. 500) {
        my $r = $t->post('/messages/messages/topic/x',
                         {content => {i => $i, p => $payload}},
                         token => $tok);
        die "publish $i: $r->{status}\n" unless $r->{status} == 200;
        $last = $r->{json}{offset};
        MOM::Test::write_file("$dir/progress.tmp", $last);
        rename "$dir/progress.tmp", "$dir/progress";
    }
    MOM::Test::write_file("$dir/last", $last);
});
my $stall = time + 20;
sleep 0.05 while time < $stall
    && (MOM::Test::read_file_maybe("$dir/progress") || 0) < 100;
# Read at full speed now: whatever is queued must arrive within the 5 s.
setsockopt($slow->sock, SOL_SOCKET, SO_RCVBUF, 1 << 20);
# Now read: what was buffered, then the final event.
my @got;
my $end;
my $deadline = time + 30;
while (time < $deadline) {
    my $ev = $slow->next_data(timeout => $deadline - time) // last;
    if (($ev->{event} // '') eq 'end') { $end = $ev; last }
    push @got, $ev;
}
is_deeply([$t->wait_children(120, $pub)], [0],
          'publishing is not held up by a slow subscriber');
my $last = MOM::Test::read_file_maybe("$dir/last") || 500;
is($end && $end->{json} && $end->{json}{reason}, 'subscriber too slow',
   'cut off with "subscriber too slow"');
cmp_ok(scalar @got, '<', $last, 'before receiving everything');
is_deeply(ids(@got), [1 .. scalar @got], 'what it got has no gap');
ok($slow->wait_closed(5), 'slow stream closed');
$slow->disconnect;

my $resume_from = @got ? $got[-1]{id} : 0;
$tok = $t->user_token('alice');
my $again = $t->sse('/messages/messages/topic/x', token => $tok,
                    last_event_id => $resume_from);
my @rest = $again->data_events($last - $resume_from, timeout => 30);
is_deeply(ids(@rest), [$resume_from + 1 .. $last],
          'resume with Last-Event-ID: the rest, no gap');
$again->disconnect;

# --- momd stops under open streams -----------------------------------------

$tok = $t->user_token('alice');
my @open = map { $t->sse('/messages/messages/topic/x', token => $tok) } 1 .. 5;
is_deeply([map { $_->status } @open], [(200) x 5], '5 streams open');
$t->stop_momd;
my $ended = 0;
for my $ss (@open) {
    my $ev;
    while (defined(my $b = $ss->next_block(timeout => 5))) {
        $ev = $b if ($b->{event} // '') eq 'end';
    }
    $ended++ if $ss->closed;
    if ($ev) {
        is_deeply($ev->{json}, {reason => 'server shutting down'},
                  'final event: server shutting down');
    }
    $ss->disconnect;
}
is($ended, 5, 'every stream ended when momd stopped');
ok($t->start_momd, 'momd back');

# --- nginx graceful stop with open streams ---------------------------------

$tok = $t->user_token('alice');
@open = map { $t->sse('/messages/messages/topic/x', token => $tok) } 1 .. 3;
my $st0 = time;
$t->stop_nginx;
my $took = time - $st0;
cmp_ok($took, '<', 13, sprintf 'nginx stops within worker_shutdown_timeout'
       . ' (%.1f s)', $took);
$_->disconnect for @open;
ok($t->start_nginx, 'nginx back');
is($t->get('/messages/topics', token => $t->user_token('alice'))->{status},
   200, 'answers');

sub ids { [map { $_->{id} } @_] }

$t->check_logs;
done_testing;
