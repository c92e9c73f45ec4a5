#!/usr/bin/perl

# Durability on one node: users, topics, queues and messages survive a
# restart of nginx, a graceful restart of momd and a kill -9 of momd; and
# while a publisher writes without pause, kill -9 of momd loses nothing
# that was acknowledged: after restart every message that got 200 is
# there, at the offset it was given, offsets strictly increase, and no
# message appears twice.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use MOM::Test;

my $t = MOM::Test->new;
our $TODO = $t->todo;
$t->start;

my $tok = $t->user_token('alice');
ok($tok, 'logged in');
$t->user_token('bob');
is($t->post('/messages/topics', {name => 'log'}, token => $tok)->{status},
   200, 'topic created');
is($t->post('/messages/queues', {name => 'work'}, token => $tok)->{status},
   200, 'queue created');
for my $i (1 .. 5) {
    $t->post('/messages/messages/topic/log', {content => "m$i"},
             token => $tok);
    $t->post('/messages/messages/queue/work', {content => "w$i"},
             token => $tok);
}
# One queue message consumed before the restarts: must stay consumed.
my $r = $t->get('/messages/messages/queue/work', token => $tok);
is($r->{json} && $r->{json}{message} && $r->{json}{message}{content}, 'w1',
   'w1 received');
my $history = $t->get('/messages/messages/topic/log')->{json};

sub same_state {
    my ($when) = @_;
    my $r = $t->get('/auth/users', token => $tok);
    is($r->{status}, 200, "$when: old token still valid");
    is_deeply($r->{json}{users}, [qw(alice bob)], "$when: users");
    is_deeply($t->get('/messages/topics')->{json}{topics}, ['log'],
              "$when: topics");
    is_deeply($t->get('/messages/queues')->{json}{queues}, ['work'],
              "$when: queues");
    is_deeply($t->get('/messages/messages/topic/log')->{json}, $history,
              "$when: history identical");
    $r = $t->post('/auth/login', {username => 'bob',
                                  password => $t->password_for('bob')});
    is($r->{status}, 200, "$when: login still works");
}

$t->restart_nginx;
same_state('after nginx restart');

ok($t->restart_momd, 'momd restarted (SIGTERM)');
same_state('after momd restart');

$t->kill_momd;
ok($t->start_momd, 'momd started after kill -9');
same_state('after momd kill -9');

$t->kill_nginx;
ok($t->start_nginx, 'nginx started after kill -9');
same_state('after nginx kill -9');

# The queue kept its order and its consumed message stayed consumed.
my @got;
for (1 .. 5) {
    $r = $t->get('/messages/messages/queue/work', token => $tok);
    last unless $r->{json} && $r->{json}{message};
    push @got, $r->{json}{message}{content};
}
is_deeply(\@got, [qw(w2 w3 w4 w5)], 'queue: w2..w5 in order, w1 not again');

# Offsets continue after the restarts.
$r = $t->post('/messages/messages/topic/log', {content => 'm6'},
              token => $tok);
is($r->{json} && $r->{json}{offset}, 6, 'offsets continue at 6');

# --- kill -9 during a stream of writes -----------------------------------

is($t->post('/messages/topics', {name => 'stream'}, token => $tok)->{status},
   200, 'stream topic created');
my $acks = $t->dir . '/acks';
my $stop_file = $t->dir . '/stop';
my $pid = $t->spawn(sub {
    open my $fh, '>', $acks or die "$acks: $!";
    $fh->autoflush(1);
    my $seq = 0;
    my $deadline = time + 40;
    # Keep writing through the outage until told to stop.
    while (!-e $stop_file && time < $deadline) {
        $seq++;
        my $r = $t->post('/messages/messages/topic/stream', {content => $seq},
                         token => $tok);
        if ($r->{status} == 200 && $r->{json}) {
            print $fh "$seq $r->{json}{offset}\n";
        } else {
            print $fh "$seq fail $r->{status}\n";
            sleep 0.01;
        }
    }
    close $fh;
});

sub first10 { my @l = @_; $#l = 9 if @l > 10; return @l }

sub acked {
    my @a;
    open my $fh, "<", $acks or return wantarray ? () : 0;
    while (<$fh>) {
        push @a, [$1, $2] if /^(\d+) (\d+)$/;
    }
    return @a;
}

# Let some writes land, crash momd mid-stream, twice.
for my $round (1 .. 2) {
    my $t0 = time;
    sleep 0.05 while acked() < 100 * $round && time - $t0 < 10;
    $t->kill_momd;
    sleep 0.3;
    ok($t->start_momd, "round $round: momd restarted after kill -9");
}
my $t0 = time;
my $before = () = acked();
sleep 0.05 while acked() < $before + 100 && time - $t0 < 10;
MOM::Test::write_file($stop_file, '');
$t->wait_children(30, $pid);

my @acked = acked();
my @fails = grep { /fail/ } split /\n/, MOM::Test::read_file_maybe($acks);
cmp_ok(scalar @acked, '>=', 300, 'publisher got >= 300 acks')
    or diag(scalar(@fails) . ' failures');
note(scalar(@acked) . ' acknowledged, ' . scalar(@fails) . ' failed');

# Read the whole topic, paging with since.
my @msgs;
my $since = 0;
while (1) {
    $r = $t->get("/messages/messages/topic/stream?since=$since&limit=1000");
    last unless $r->{status} == 200 && @{$r->{json}{messages} // []};
    push @msgs, @{$r->{json}{messages}};
    $since = $msgs[-1]{offset};
}

my %at;                     # content (seq) -> offsets seen
my $increasing = 1;
my $prev = 0;
for my $m (@msgs) {
    $increasing = 0 unless $m->{offset} > $prev;
    $prev = $m->{offset};
    push @{$at{$m->{content}}}, $m->{offset};
}
ok($increasing, 'offsets strictly increasing');
my @dups = grep { @{$at{$_}} > 1 } keys %at;
ok(!@dups, 'no message stored twice') or diag("dups: @{[first10(@dups)]}");
my @lost = grep { !$at{$_->[0]} } @acked;
ok(!@lost, 'every acknowledged message present')
    or diag('lost: ' . join ' ', map { $_->[0] } first10(@lost));
my @moved = grep { $at{$_->[0]} && $at{$_->[0]}[0] != $_->[1] } @acked;
ok(!@moved, 'each acknowledged message at the offset it was given')
    or diag('moved: ' . join ' ',
            map { "$_->[0]\@$_->[1]->$at{$_->[0]}[0]" } first10(@moved));
# Order: the publisher is sequential, so seq order = offset order.
my @seqs = map { $_->{content} } @msgs;
is_deeply(\@seqs, [sort { $a <=> $b } @seqs], 'publish order kept');

$t->check_logs;
done_testing;
