#!/usr/bin/perl

# momd alone, multiplexed requests (Request.id != 0, docs/architecture.md
# "Local frames"): requests pipelined in one write on one connection are
# all dispatched at once and answered in completion order, each reply
# carrying its request's id; a slow LOGIN (PBKDF2 on the thread pool) does
# not hold up a LIST or a PUBLISH behind it; 1,000 pipelined publishes get
# 1,000 replies and offsets; SUBSCRIBE cannot be multiplexed (400, the
# connection stays usable); id-0 requests keep their one-at-a-time order,
# alone and mixed with multiplexed ones; a client that pipelines and
# closes at once does not hurt momd; a graceful stop answers what is in
# flight, then closes; an OP_CANCEL read with its request drops it.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP;
use Time::HiRes qw(time sleep);
use MOM::Test;
use MOM::Test::Frame;

# A login must take clearly longer than a LIST or a group commit.
my $t = MOM::Test->new(pbkdf2_iterations => 400000);
ok($t->start_momd, 'momd started');
my $sock = $t->socket_path;
my $J = JSON::PP->new->utf8->canonical;

sub conn { MOM::Test::Frame->new($sock) }

sub body {
    my ($r) = @_;
    return $r && length $r->{body} ? eval { $J->decode($r->{body}) } : undef;
}

# Reads n responses (or fewer on timeout), in arrival order.
sub responses {
    my ($c, $n, $timeout) = @_;
    my @out;
    my $deadline = time + ($timeout // 10);
    while (@out < $n) {
        my $left = $deadline - time;
        last if $left <= 0;
        my $r = $c->response(timeout => $left) or last;
        push @out, $r;
    }
    return @out;
}

# --- setup, id 0 -------------------------------------------------------------
my $c = conn();
ok($c, 'connected');
$c->request(op => 'OP_REGISTER', name => 'alice', password => 'pw');
my $r = $c->response(timeout => 30);
is($r && $r->{status}, 200, 'register (id 0)');
is($r && $r->{id}, 0, 'an id-0 reply carries id 0');
$c->request(op => 'OP_CREATE_TOPIC', name => 't', user => 'alice');
$r = $c->response(timeout => 5);
is($r && $r->{status}, 200, 'create topic t');
$c->request(op => 'OP_CREATE_TOPIC', name => 'bulk', user => 'alice');
$r = $c->response(timeout => 5);
is($r && $r->{status}, 200, 'create topic bulk');

# --- 1. a slow login does not hold up what follows it ------------------------
my $m = conn();
my $t0 = time;
ok($m->pipeline(
       {op => 'OP_LOGIN', name => 'alice', password => 'pw', id => 1},
       {op => 'OP_LIST_TOPICS', id => 2},
       {op => 'OP_PUBLISH', name => 't', user => 'alice',
        content => '"first"', id => 3},
   ), 'login, list, publish pipelined in one write');
my @r = responses($m, 3, 30);
my $login_s = time - $t0;
is(scalar @r, 3, 'three replies');
my %pos = map { $r[$_]{id} => $_ } 0 .. $#r;
is_deeply([sort keys %pos], [1, 2, 3], 'each id answered once');
ok(defined $pos{1} && defined $pos{2} && $pos{2} < $pos{1},
   'LIST (id 2) answered before the slow LOGIN (id 1)')
    or diag(explain [map { "$_->{id}:$_->{status}" } @r]);
ok(defined $pos{1} && defined $pos{3} && $pos{3} < $pos{1},
   'PUBLISH (id 3) answered before the slow LOGIN (id 1)');
my %by = map { $_->{id} => $_ } @r;
is($by{1} && $by{1}{status}, 200, 'login 200');
is($by{1} && $by{1}{user}, 'alice', 'login: user alice');
is($by{2} && $by{2}{body}, '{"topics":["bulk","t"]}', 'list body');
is_deeply(body($by{3}), {message => 'Message published', offset => 1},
          'publish body: offset 1');
note(sprintf 'login took %.0f ms', $login_s * 1000);

# --- 2. 1,000 pipelined publishes on one connection --------------------------
my $N = 1000;
ok($m->pipeline(map {
       {op => 'OP_PUBLISH', name => 'bulk', user => 'alice',
        content => qq("m$_"), id => $_}
   } 1 .. $N), "$N publishes pipelined in one write");
@r = responses($m, $N, 60);
is(scalar @r, $N, "$N replies");
my (%ids, %offsets, $bad);
for my $x (@r) {
    $ids{$x->{id}}++;
    my $b = body($x);
    $bad++ unless $x->{status} == 200 && $b && $b->{offset};
    $offsets{$b->{offset}}++ if $b && $b->{offset};
}
ok(!$bad, 'every publish answered 200 with an offset');
is(scalar(grep { ($ids{$_} // 0) == 1 } 1 .. $N), $N, 'ids 1..N once each');
is(scalar(keys %ids), $N, 'no other id');
is(scalar(grep { ($offsets{$_} // 0) == 1 } 1 .. $N), $N,
   'offsets 1..N once each');
my @msgs;
my $since = 0;
while (1) {
    $c->request(op => 'OP_HISTORY', name => 'bulk', since => $since,
                has_since => 1, limit => 1000);
    my $h = body($c->response(timeout => 10)) or last;
    my @page = @{$h->{messages} || []};
    last unless @page;
    push @msgs, @page;
    $since = $page[-1]{offset};
}
is(scalar @msgs, $N, "history holds $N messages");
is_deeply([map { $_->{offset} } @msgs], [1 .. $N], 'offsets in order');
# Publishes dispatched together commit in request order.
is_deeply([map { $_->{content} } @msgs], [map { "m$_" } 1 .. $N],
          'contents in request order');

# --- 3. SUBSCRIBE cannot be multiplexed --------------------------------------
ok($m->pipeline({op => 'OP_SUBSCRIBE', name => 't', user => 'alice',
                 id => 77},
                {op => 'OP_LIST_TOPICS', id => 78}),
   'multiplexed subscribe + list');
@r = sort { $a->{id} <=> $b->{id} } responses($m, 2, 5);
is($r[0] && $r[0]{id}, 77, 'subscribe answered with its id');
is($r[0] && $r[0]{kind_name}, 'REPLY', 'a REPLY');
is($r[0] && $r[0]{status}, 400, 'status 400');
is_deeply(body($r[0]), {detail => 'Subscriptions cannot be multiplexed'},
          '400 body');
is($r[1] && $r[1]{id}, 78, 'the connection still answers (id 78)');
is($r[1] && $r[1]{status}, 200, 'list 200');

# --- 3b. OP_CANCEL read with its request: the request is never started -------
$c->request(op => 'OP_CREATE_TOPIC', name => 'cx', user => 'alice');
is($c->response(timeout => 5)->{status}, 200, 'create topic cx');
ok($m->pipeline(
       {op => 'OP_PUBLISH', name => 'cx', user => 'alice',
        content => '"cancelled"', id => 90},
       {op => 'OP_CANCEL', id => 90},
       {op => 'OP_CANCEL', id => 12345},
       {op => 'OP_PUBLISH', name => 'cx', user => 'alice',
        content => '"kept"', id => 91}),
   'publish, its cancel, a cancel of nothing, publish: in one write');
@r = responses($m, 2, 3);
is(scalar @r, 1, 'one reply: a cancel and a cancelled request get none');
is($r[0] && $r[0]{id}, 91, '... the kept publish\'s');
$c->request(op => 'OP_HISTORY', name => 'cx', since => 0, limit => 1000);
$r = $c->response(timeout => 5);
my @contents = map { $_->{content} } @{(body($r) // {})->{messages} // []};
ok((grep { $_ eq 'kept' } @contents), 'the kept publish is stored');
ok(!(grep { $_ eq 'cancelled' } @contents),
   'the cancelled publish was never applied');

# --- 4. id 0: in order; mixed with multiplexed requests ----------------------
ok($c->pipeline(
       {op => 'OP_PUBLISH', name => 't', user => 'alice', content => '"a"'},
       {op => 'OP_LIST_TOPICS'},
       {op => 'OP_PUBLISH', name => 't', user => 'alice', content => '"b"'},
   ), 'three id-0 requests pipelined');
@r = responses($c, 3, 10);
is_deeply([map { $_->{id} } @r], [0, 0, 0], 'id-0 replies carry id 0');
is_deeply([body($r[0]), $r[1] && $r[1]{body}, body($r[2])],
          [{message => 'Message published', offset => 2},
           '{"topics":["bulk","cx","t"]}',
           {message => 'Message published', offset => 3}],
          'answered in order');

# Mixed: the id-0 LOGIN waits for the publishes before it, and the
# multiplexed LIST after it waits for the login (an id-0 request is served
# alone).
ok($m->pipeline(
       {op => 'OP_PUBLISH', name => 't', user => 'alice', content => '"c"',
        id => 100},
       {op => 'OP_PUBLISH', name => 't', user => 'alice', content => '"d"',
        id => 101},
       {op => 'OP_LOGIN', name => 'alice', password => 'pw'},
       {op => 'OP_LIST_TOPICS', id => 102},
   ), 'mixed pipeline');
@r = responses($m, 4, 30);
is(scalar @r, 4, 'four replies');
%by = map { $_->{id} => $_ } @r;
is_deeply([sort { $a <=> $b } keys %by], [0, 100, 101, 102],
          'ids 0, 100, 101, 102');
is_deeply([map { $_->{id} } @r[2, 3]], [0, 102],
          'the id-0 login after both publishes, the list after it');
is(body($by{100}) && body($by{100})->{offset}, 4, 'publish c: offset 4');
is(body($by{101}) && body($by{101})->{offset}, 5, 'publish d: offset 5');
is($by{0} && $by{0}{user}, 'alice', 'login (id 0) 200 alice');
is($by{102} && $by{102}{status}, 200, 'list 200');

# --- 5. pipelined publishes, then the client closes at once ------------------
for my $round (1 .. 3) {
    my $g = conn();
    $g->pipeline(map {
        {op => 'OP_PUBLISH', name => 'bulk', user => 'alice',
         content => qq("gone$round-$_"), id => $_}
    } 1 .. 500);
    $g->disconnect;
}
sleep 0.5;
ok(kill(0, $t->momd_pid), 'momd still running');
my $n = conn();
ok($n, 'a new connection');
$n->request(op => 'OP_LIST_TOPICS', id => 9);
$r = $n->response(timeout => 5);
is($r && $r->{status}, 200, 'momd answers it');
is($r && $r->{id}, 9, 'with its id');
my @gone;
$since = $N;
while (1) {
    $n->request(op => 'OP_HISTORY', name => 'bulk', since => $since,
                has_since => 1, limit => 1000);
    my $h = body($n->response(timeout => 5)) or last;
    my @page = @{$h->{messages} || []};
    last unless @page;
    push @gone, @page;
    $since = $page[-1]{offset};
}
ok(@gone <= 1500, scalar(@gone) . ' of 1500 abandoned publishes committed');
my %seen;
is(scalar(grep { $seen{$_->{content}}++ } @gone), 0, 'none twice');

# --- 6. graceful stop with multiplexed requests in flight --------------------
# Those dispatched are answered before momd closes the connection.
my $s = conn();
$s->pipeline(map {
    {op => 'OP_PUBLISH', name => 'bulk', user => 'alice',
     content => qq("last$_"), id => $_}
} 1 .. 200);
sleep 0.2;
my $st = $t->stop_momd;
is($st, 0, 'momd stopped cleanly');
my @last = responses($s, 200, 5);
ok(@last > 0 && !grep({ $_->{status} != 200 && $_->{status} != 503 } @last),
   scalar(@last) . ' replies before the close, 200 or 503');
ok($s->closed_by_peer(5), 'then momd closed the connection');

$t->check_logs;

# --- 7. a cluster: multiplexed requests forwarded to other leaders -----------
# Topics spread over the partitions of three nodes; everything is sent to
# node 1, which forwards what it does not lead: each answer comes back to
# its own id.
my $cl = MOM::Test->new(nodes => 3);
ok($cl->start_momd($_), "cluster: momd $_ started") for 1 .. 3;
my $k1 = MOM::Test::Frame->new($cl->socket_path(1));
my $ready;
for (1 .. 150) {
    $k1->request(op => 'OP_REGISTER', name => 'bob', password => 'pw');
    my $x = $k1->response(timeout => 5);
    $ready = $x && $x->{status} == 200 and last;
    sleep 0.1;
}
ok($ready, 'cluster: user registered through node 1');
my @topics = map { "c$_" } 1 .. 30;
$k1->pipeline(map {
    {op => 'OP_CREATE_TOPIC', name => $topics[$_ - 1], user => 'bob',
     id => $_}
} 1 .. @topics);
@r = responses($k1, scalar @topics, 20);
is(scalar(grep { $_->{status} == 200 } @r), scalar @topics,
   'cluster: 30 topics created, multiplexed')
    or diag(explain [map { "$_->{id}:$_->{status}:$_->{body}" } @r]);
%by = map { $_->{id} => $_ } @r;
is_deeply([map { body($by{$_}) && body($by{$_})->{name} } 1 .. @topics],
          \@topics, 'cluster: each reply names the topic of its id');
$k1->pipeline(map {
    my $i = $_;
    map {
        {op => 'OP_PUBLISH', name => $topics[$i - 1], user => 'bob',
         content => qq("p$_"), id => 1000 * $i + $_}
    } 1 .. 5
} 1 .. @topics);
@r = responses($k1, 5 * @topics, 30);
%by = map { $_->{id} => $_ } @r;
my $good = grep {
    my $i = $_;
    my @off = sort { $a <=> $b } map {
        my $x = $by{1000 * $i + $_};
        $x && $x->{status} == 200 && body($x) ? body($x)->{offset} : 0
    } 1 .. 5;
    "@off" eq "1 2 3 4 5"
} 1 .. @topics;
is($good, scalar @topics,
   'cluster: 150 publishes answered by id, offsets 1..5 per topic');
my @leaders = grep { $cl->leads($_) } 1 .. 3;
ok(@leaders > 1, 'cluster: partitions led by ' . scalar(@leaders)
   . ' nodes (some requests were forwarded)');
$cl->check_logs;
done_testing;
