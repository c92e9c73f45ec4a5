#!/usr/bin/perl

# Streams leave nothing behind: 10,000 subscribe/disconnect cycles through
# nginx, spread over a few concurrent clients and mixing the ways a stream
# can end early (after the retry hint of a live stream, in the middle of a
# replay, before momd's reply even arrived, with a token whose expiry timer
# is armed), then momd's open file descriptors (/proc/<pid>/fd) are back to
# exactly the baseline and its resident memory (VmRSS) within a small
# margin of it; so are the nginx workers' descriptors. The baseline is
# taken after a warm-up of the same shape, so that caches and allocator
# arenas are already at their working size.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use IO::Select;
use IO::Socket::INET;
use Test::More;
use Time::HiRes qw(time sleep);
use MOM::Test;

my $CYCLES = $ENV{MOM_TEST_SSE_CYCLES} // 10_000;
my $CLIENTS = 4;
my $WARMUP = 1_000;
my $RSS_MARGIN_KB = 512;     # a leak of 64 bytes per cycle would show

my $t = MOM::Test->new(workers => 2);
our $TODO = $t->todo('sse');
$t->start;
ok($t->ok, 'node up') or BAIL_OUT('the node did not start');

my $tok = $t->user_token('alice');
is($t->post('/messages/topics', {name => 'res'}, token => $tok)->{status},
   200, 'topic created');
my $path = '/messages/messages/topic/res';
$t->sse_or_stop($path);
# More than one replay page (256), so that a replay is cut in its middle.
my $ok = 0;
for my $n (1 .. 300) {
    $ok++ if $t->post($path, {content => $n}, token => $tok)->{status} == 200;
}
is($ok, 300, '300 messages to replay');

my $momd = $t->momd_pid;
my $master = $t->nginx_pid;

sub fds { my @f = glob "/proc/$_[0]/fd/*"; scalar @f }

# What the fds are, for a failure's diagnostics.
sub fd_list {
    my ($pid) = @_;
    my %n;
    $n{readlink($_) // '?'}++ for glob "/proc/$pid/fd/*";
    return join ', ', map { $n{$_} > 1 ? "$_ x$n{$_}" : $_ } sort keys %n;
}

sub rss_kb {
    my $s = MOM::Test::read_file_maybe("/proc/$_[0]/status");
    return $s =~ /^VmRSS:\s+(\d+) kB/m ? $1 : undef;
}

sub worker_fds { my $n = 0; $n += fds($_) for MOM::Test::child_pids($master); $n }

# One cycle of kind k on a raw socket (the harness's SSE reader would
# decode the whole replay page in Perl); true when it went as expected.
sub cycle {
    my ($k) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                  PeerPort => $t->port, Proto => 'tcp')
        or return 0;
    my $q = $k == 1 ? '?last_event_id=0' : $k == 3 ? "?token=$tok" : '';
    print $s "GET $path$q HTTP/1.1\r\nHost: x\r\n"
             . "Accept: text/event-stream\r\n\r\n";
    # kind 2: gone before momd's reply.
    return close $s if $k == 2;
    # kind 1: the first replayed event, the rest of the replay pending;
    # kinds 0 and 3: the retry hint, the stream live.
    my $want = $k == 1 ? qr/\nid: 1\n/ : qr/\nretry: 3000\n/;
    my $sel = IO::Select->new($s);
    my $buf = '';
    my $deadline = time + 5;
    while ($buf !~ $want && time < $deadline && $sel->can_read(1)) {
        sysread($s, $buf, 65536, length $buf) or last;
    }
    close $s;
    return $buf =~ m{^HTTP/1\.1 200 } && $buf =~ $want;
}

# run(n): n cycles over $CLIENTS concurrent clients; failed cycles, seconds.
sub run {
    my ($n) = @_;
    my $t0 = time;
    my $dir = $t->dir;
    my @pids = map {
        my $c = $_;
        $t->spawn(sub {
            my $bad = 0;
            for (my $i = $c; $i < $n; $i += $CLIENTS) {
                $bad++ unless cycle(int($i / $CLIENTS) % 4);
            }
            MOM::Test::write_file("$dir/bad.$c", $bad);
        });
    } 0 .. $CLIENTS - 1;
    my @st = $t->wait_children(600, @pids);
    my $bad = 0;
    for my $c (0 .. $CLIENTS - 1) {
        $bad += $st[$c] // 1;
        $bad += MOM::Test::read_file_maybe("$dir/bad.$c") || 0;
    }
    return ($bad, time - $t0);
}

# settle(code, want): poll until code returns want (10 s at most); its
# last value.
sub settle {
    my ($code, $want) = @_;
    my $deadline = time + 10;
    my $v = $code->();
    while (time < $deadline && $v != $want) {
        sleep 0.1;
        $v = $code->();
    }
    return $v;
}

# Counting nginx's descriptors: no idle keepalive connection of ours.
$t->drop_connections;

my ($bad, $secs) = run($WARMUP);
is($bad, 0, sprintf '%d warm-up cycles (%.1f s)', $WARMUP, $secs);
sleep 1;
my $fds0 = fds($momd);
my $fd_list0 = fd_list($momd);
note("momd fds: $fd_list0");
my $wfds0 = worker_fds();
my $rss0 = rss_kb($momd);
# The stable state: nothing changes while nothing happens.
sleep 0.5;
is(fds($momd), $fds0, "baseline: momd has $fds0 fds, ${rss0} kB RSS");

($bad, $secs) = run($CYCLES);
is($bad, 0, sprintf '%d subscribe/disconnect cycles over %d clients: '
                    . '%.1f s, %.0f/s', $CYCLES, $CLIENTS, $secs,
                    $CYCLES / $secs);

my $fds1 = settle(sub { fds($momd) }, $fds0);
is($fds1, $fds0, "momd fds back to the baseline ($fds0 -> $fds1)")
    or diag("baseline: $fd_list0\nnow: " . fd_list($momd));
my $wfds1 = settle(\&worker_fds, $wfds0);
is($wfds1, $wfds0, "nginx workers' fds back to the baseline"
                   . " ($wfds0 -> $wfds1)");
my $rss1 = rss_kb($momd);
cmp_ok($rss1 - $rss0, '<=', $RSS_MARGIN_KB,
       sprintf 'momd RSS %d kB -> %d kB (%+d kB, margin %d kB)', $rss0,
       $rss1, $rss1 - $rss0, $RSS_MARGIN_KB);

# Still serving streams after all that.
my $s = $t->sse($path, last_event_id => 299);
my ($ev) = $s->data_events(1, timeout => 5);
is($ev && $ev->{id}, 300, 'a new stream still works');
$s->disconnect;

$t->check_logs;
done_testing();
