#!/usr/bin/perl

# nginx reload (SIGHUP to the master, what `nginx -s reload` sends) with
# event streams open and a publisher busy: the old workers keep serving
# their streams until worker_shutdown_timeout, then close them and exit;
# the subscribers reconnect to the new workers with Last-Event-ID and,
# across the reconnect, each receives every published message exactly once
# and in order. The old workers must be gone within the timeout plus a
# small margin (their PIDs are watched from the moment of the HUP).

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use MOM::Test;

my $SUBS = 6;
my $TOTAL = 1200;
my $RATE = 80;          # messages/s: the publisher outlives the old workers
my $MARGIN = 2;         # s beyond worker_shutdown_timeout

my $t = MOM::Test->new(workers => 2, location_extra => 'mom_heartbeat 1s;');
our $TODO = $t->todo('sse');
$t->start;
ok($t->ok, 'node up') or BAIL_OUT('the node did not start');

my ($shutdown_timeout) = MOM::Test::read_file($t->node_dir . '/nginx.conf')
    =~ /^\s*worker_shutdown_timeout\s+(\d+)s;/m;
ok($shutdown_timeout, "nginx.conf sets worker_shutdown_timeout"
                      . " (${\ ($shutdown_timeout // '?')}s)")
    or BAIL_OUT('no worker_shutdown_timeout');

my $tok = $t->user_token('alice');
is($t->post('/messages/topics', {name => 'reload'}, token => $tok)->{status},
   200, 'topic created');
my $path = '/messages/messages/topic/reload';
$t->sse_or_stop($path);

my $dir = $t->dir;

# A subscriber: the whole topic from offset 0; on every disconnect it
# reconnects with Last-Event-ID = the last id it saw. Writes what it got.
sub subscriber {
    my ($i) = @_;
    my (@ids, @seq, @disconnects, @ends, @refused);
    my $last = 0;
    my $s = $t->sse($path, last_event_id => 0);
    die "subscriber $i: status " . $s->status . "\n" unless $s->status == 200;
    $s->next_block(timeout => 5);               # retry: the stream is set up
    MOM::Test::write_file("$dir/ready.$i", '');
    my $deadline = time + 30 + $TOTAL / $RATE + $shutdown_timeout;
    while (@ids < $TOTAL && time < $deadline) {
        my $ev = $s->next_data(timeout => 0.5);
        if ($ev) {
            if (($ev->{event} // '') eq 'end') {
                push @ends, $ev->{json} ? $ev->{json}{reason} : $ev->{data};
                next;
            }
            push @ids, $ev->{id};
            push @seq, $ev->{json} ? $ev->{json}{content}{seq} : undef;
            $last = $ev->{id};
            next;
        }
        next unless $s->closed;
        push @disconnects, {t => time, after => $last};
        while (time < $deadline) {
            $s = $t->sse($path, last_event_id => $last);
            last if $s->status == 200;
            push @refused, $s->status;
            sleep 0.1;
        }
    }
    $s->disconnect;
    MOM::Test::write_file("$dir/sub.$i.json", $t->JSON->encode({
        ids => \@ids, seq => \@seq, disconnects => \@disconnects,
        ends => \@ends, refused => \@refused,
    }));
}

# The publisher: $TOTAL messages at $RATE/s, each numbered, on a keepalive
# connection; it records the offset of every acknowledged publish and every
# failure. At the reload the old worker closes its idle keepalive
# connections, which races with the next request on it: like any HTTP
# client, the publisher sends again when no response came (HTTP::Tiny's
# 599). That nothing was applied twice is checked below (contents).
sub publisher {
    my (@acked, @failed, @retried);
    my $t0 = time;
    for my $n (1 .. $TOTAL) {
        my $wait = $t0 + $n / $RATE - time;
        sleep $wait if $wait > 0;
        my $r;
        for my $try (1 .. 3) {
            $r = $t->post($path, {content => {seq => $n}}, token => $tok);
            last unless $r->{status} == 599;
            push @retried, [$n, $r->{content}];
        }
        if ($r->{status} == 200) {
            push @acked, [$n, $r->{json}{offset}];
        } else {
            push @failed, [$n, $r->{status}, $r->{content}];
        }
    }
    MOM::Test::write_file("$dir/pub.json", $t->JSON->encode({
        acked => \@acked, failed => \@failed, retried => \@retried}));
}

my @subs = map { my $i = $_; $t->spawn(sub { subscriber($i) }) } 1 .. $SUBS;
my $ready_by = time + 10;
sleep 0.05 while time < $ready_by && grep { !-e "$dir/ready.$_" } 1 .. $SUBS;
is(scalar(grep { -e "$dir/ready.$_" } 1 .. $SUBS), $SUBS,
   "$SUBS subscribers connected");

my $pub = $t->spawn(\&publisher);
sleep 1.5;

# --- the reload ------------------------------------------------------------

my $master = $t->nginx_pid;
my @old = MOM::Test::child_pids($master);
is(scalar @old, 2, 'two workers before the reload: ' . join ' ', @old);
my $t_hup = time;
kill 'HUP', $master;

my %gone;
my @new;
my $watch_until = $t_hup + $shutdown_timeout + 15;
while (time < $watch_until && keys %gone < @old) {
    for my $pid (@old) {
        $gone{$pid} //= time - $t_hup unless MOM::Test::_alive($pid);
    }
    sleep 0.05;
}
my %old = map { $_ => 1 } @old;
@new = grep { !$old{$_} } MOM::Test::child_pids($master);
is(scalar @new, 2, 'two new workers: ' . join ' ', @new);
ok(MOM::Test::_alive($master), 'the master is the same process');
for my $pid (@old) {
    my $lived = $gone{$pid};
    ok(defined $lived && $lived <= $shutdown_timeout + $MARGIN,
       sprintf 'old worker %d exited %s after the HUP (<= %ds + %ds)', $pid,
       defined $lived ? sprintf('%.2fs', $lived) : 'not', $shutdown_timeout,
       $MARGIN);
}

# --- every subscriber got every message once, in order ---------------------

my @st = $t->wait_children(30 + $TOTAL / $RATE + $shutdown_timeout,
                           $pub, @subs);
is_deeply(\@st, [(0) x (1 + $SUBS)], 'publisher and subscribers finished');

my $pubres = eval { $t->JSON->decode(MOM::Test::read_file("$dir/pub.json")) }
             // {acked => [], failed => []};
is(scalar @{$pubres->{failed}}, 0, 'every publish acknowledged')
    or diag(explain([@{$pubres->{failed}}[0 .. 4]]));
my @acked_offsets = map { $_->[1] } @{$pubres->{acked}};
is_deeply(\@acked_offsets, [1 .. $TOTAL], "offsets 1..$TOTAL in publish order");

note(scalar(@{$pubres->{retried} // []}) . ' publish(es) sent again after'
     . ' a closed keepalive connection: '
     . join '; ', map { "seq $_->[0]: $_->[1]" } @{$pubres->{retried} // []});

my @history;
while (1) {
    my $h = $t->get("$path?limit=1000&since=" . scalar @history)->{json};
    last unless $h && @{$h->{messages}};
    push @history, map { $_->{content}{seq} } @{$h->{messages}};
}
is_deeply(\@history, [1 .. $TOTAL],
          "the topic holds $TOTAL messages, each once, in publish order");

for my $i (1 .. $SUBS) {
    my $r = eval { $t->JSON->decode(MOM::Test::read_file("$dir/sub.$i.json")) }
            // {ids => [], seq => [], disconnects => [], ends => []};
    my @ids = @{$r->{ids}};
    my @d = @{$r->{disconnects}};
    is_deeply(\@ids, [1 .. $TOTAL],
              "subscriber $i: offsets 1..$TOTAL exactly once, in order")
        or diag(sprintf 'got %d events, first gap/dup at index %d',
                scalar @ids, first_mismatch(\@ids));
    is_deeply($r->{seq}, [1 .. $TOTAL],
              "subscriber $i: contents in publish order");
    ok(@d >= 1, sprintf 'subscriber %d: disconnected %d time(s) by the old'
                        . ' worker, %s after the HUP, at offset %s', $i,
                        scalar @d,
                        @d ? sprintf('%.2fs', $d[0]{t} - $t_hup) : '-',
                        @d ? $d[0]{after} : '-');
    ok(!@d || $d[0]{t} - $t_hup <= $shutdown_timeout + $MARGIN,
       "subscriber $i: disconnected within the shutdown timeout");
    note("subscriber $i: end events: @{$r->{ends}}") if @{$r->{ends}};
    note("subscriber $i: refused reconnects: @{$r->{refused}}")
        if @{$r->{refused} // []};
}

sub first_mismatch {
    my ($ids) = @_;
    for my $k (0 .. $#$ids) {
        return $k if $ids->[$k] != $k + 1;
    }
    return scalar @$ids;
}

$t->check_logs;
done_testing();
