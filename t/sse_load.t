#!/usr/bin/perl

# SSE fan-out under load: 1000 concurrent subscribers of one topic, 1000
# messages published by 2 concurrent publishers: every subscriber receives
# every message exactly once, in offset order (ids 1..1000, no gap, no
# duplicate). The subscribers are 4 processes multiplexing 250 raw sockets
# each with a lean chunked/SSE decoder (only ids are checked).
#
# Every stream is a connection to momd of its own: momd starts under the
# usual soft limit of 1024 open files (it must take the hard limit), and
# it is paused while the subscribers connect, so that their connects pile
# up in its accept queue (one of 511 turned the rest away with 502s).
#
# MOM_TEST_SSE_SUBS and MOM_TEST_SSE_MSGS scale it down for quick runs.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use IO::Select;
use IO::Socket::INET;
use Time::HiRes qw(time sleep);
use MOM::Test;

my $SUBS = $ENV{MOM_TEST_SSE_SUBS} // 1000;
my $MSGS = $ENV{MOM_TEST_SSE_MSGS} // 1000;
my $PROCS = 4;

my $hard = (MOM::Test::open_file_limits($$))[1] // 0;
my $t = MOM::Test->new(workers => 2, worker_connections => 4096,
                       synchronous => 'normal',
                       momd_nofile => $hard =~ /^\d+$/ && $hard > 1024
                                      ? 1024 : undef);
our $TODO = $t->todo('sse');
$t->start;
my @limits = MOM::Test::open_file_limits($t->momd_pid);
is($limits[0], $limits[1], "momd took the hard limit on open files ($hard)");

my $tok = $t->user_token('alice');
ok($tok, 'logged in');
is($t->post('/messages/topics', {name => 'fan'}, token => $tok)->{status},
   200, 'topic created');
$t->sse_or_stop('/messages/messages/topic/fan');

# Connects waiting in momd's accept queue (ss: a listener's Recv-Q).
sub momd_connects {
    my $path = $t->socket_path;
    for (`ss -xlnH 2>/dev/null`) {
        my @f = split;
        return $f[2] if @f > 4 && $f[4] eq $path;
    }
    return 0;
}

my $dir = $t->dir;
my $port = $t->port;

# One subscriber process: open n streams, report readiness, read until
# every stream has seen id $MSGS (or the deadline), write a summary.
sub subscriber {
    my ($tag, $n) = @_;
    my (%conn, @socks);
    my $sel = IO::Select->new;
    for my $i (1 .. $n) {
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                      PeerPort => $port, Proto => 'tcp')
            or die "connect $i: $!\n";
        syswrite $s, "GET /messages/messages/topic/fan HTTP/1.1\r\n"
            . "Host: x\r\nAccept: text/event-stream\r\n\r\n";
        $s->blocking(0);
        $conn{fileno $s} = {s => $s, buf => '', body => '', head => 0,
                            left => 0, crlf => 0, next => 1, err => undef};
        $sel->add($s);
    }
    my $ready = 0;
    my $done = 0;
    my $deadline = time + 240;
    while ($done < $n && time < $deadline) {
        for my $s ($sel->can_read(1)) {
            my $c = $conn{fileno $s};
            my $got = sysread $s, $c->{buf}, 262144, length $c->{buf};
            if (!$got) {
                next if !defined $got && $!{EAGAIN};
                $c->{err} //= 'closed early at id ' . ($c->{next} - 1);
                $sel->remove($s);
                $done++;
                next;
            }
            if (!$c->{head}) {
                next unless $c->{buf} =~ s/^(.*?)\r\n\r\n//s;
                my $h = $1;
                $c->{err} = "status: " . (split /\r\n/, $h)[0]
                    unless $h =~ m{^HTTP/1\.1 200};
                $c->{head} = 1;
                # The retry hint is the first thing every stream gets: we
                # count a stream ready once its headers are in.
                if (++$ready == $n) {
                    open my $f, '>', "$dir/ready.$tag";
                    close $f;
                }
            }
            # De-chunk.
            while (length $c->{buf}) {
                if ($c->{left}) {
                    my $take = substr $c->{buf}, 0, $c->{left}, '';
                    $c->{body} .= $take;
                    $c->{left} -= length $take;
                } elsif ($c->{crlf}) {
                    last if length $c->{buf} < 2;
                    substr $c->{buf}, 0, 2, '';
                    $c->{crlf} = 0;
                } elsif ($c->{buf} =~ s/^([0-9a-fA-F]+)\r\n//) {
                    $c->{left} = hex $1;
                    $c->{crlf} = 1;
                    $c->{err} //= 'stream ended' if !$c->{left};
                } else {
                    last;
                }
            }
            # Blocks; only ids matter.
            my $pos = 0;
            while ((my $e = index $c->{body}, "\n\n", $pos) >= 0) {
                my $blk = substr $c->{body}, $pos, $e - $pos;
                $pos = $e + 2;
                next unless $blk =~ /^id: (\d+)$/m;
                if ($1 != $c->{next}) {
                    $c->{err} //= "expected id $c->{next}, got $1";
                }
                $c->{next} = $1 + 1;
            }
            substr($c->{body}, 0, $pos) = '';
            if ($c->{next} > $MSGS || $c->{err}) {
                $sel->remove($s);
                $done++;
            }
        }
    }
    my @bad = grep { $_->{err} || $_->{next} <= $MSGS } values %conn;
    open my $f, '>', "$dir/result.$tag" or die $!;
    printf $f "%d %d %s\n", $n - @bad, scalar @bad,
        @bad ? ($bad[0]{err} // "stopped at id " . ($bad[0]{next} - 1))
             : '-';
    close $f;
    close $_->{s} for values %conn;
}

$t->pause_momd;
my @subs;
my $per = int($SUBS / $PROCS);
for my $p (1 .. $PROCS) {
    my $n = $p == $PROCS ? $SUBS - $per * ($PROCS - 1) : $per;
    push @subs, $t->spawn(sub { subscriber($p, $n) });
}
# Until nginx has asked momd for every stream (or 5 s).
my $t0 = time;
sleep 0.1 while time - $t0 < 5 && momd_connects() < $SUBS;
note(sprintf '%d connects to momd queued in %.1f s', momd_connects(),
             time - $t0);
$t->resume_momd;
$t0 = time;
sleep 0.1 while time - $t0 < 60
    && grep { !-e "$dir/ready.$_" } 1 .. $PROCS;
ok(!grep({ !-e "$dir/ready.$_" } 1 .. $PROCS), "$SUBS streams open")
    or diag('not ready after 60 s');
note(sprintf '%d subscribers connected in %.1f s', $SUBS, time - $t0);

my $tp = time;
my @pubs = map {
    my $k = $_;
    $t->spawn(sub {
        for (1 .. $MSGS / 2) {
            my $r = $t->post('/messages/messages/topic/fan',
                             {content => {from => $k, text => 'x' x 60}},
                             token => $tok);
            die "publish: $r->{status}\n" unless $r->{status} == 200;
        }
    });
} 1, 2;
is_deeply([$t->wait_children(120, @pubs)], [0, 0], "$MSGS messages published");
note(sprintf 'published in %.1f s', time - $tp);

my @st = $t->wait_children(300, @subs);
is_deeply(\@st, [(0) x $PROCS], 'subscriber processes finished');
my ($good, $bad) = (0, 0);
for my $p (1 .. $PROCS) {
    my ($g, $b, $why) = split ' ', MOM::Test::read_file_maybe(
        "$dir/result.$p") || '0 0 -', 3;
    $good += $g;
    $bad += $b;
    diag("subscriber process $p: $b bad, e.g. $why") if $b;
}
is($good, $SUBS, "all $SUBS subscribers got ids 1..$MSGS in order")
    or diag("$bad bad");
note(sprintf '%d x %d events delivered in %.1f s', $SUBS, $MSGS, time - $tp);

is($t->get('/messages/topics')->{status}, 200, 'node still answers');
$t->check_logs;
done_testing;
