#!/usr/bin/perl

# The module's channel to momd: unary requests of many clients pipelined
# on one connection per worker, answered out of order by id. Every client
# gets its own answer (never another's), whatever the mix of operations;
# clients that vanish, a momd that stops answering (read timeout) or dies
# with requests in flight, a reply larger than the channel's buffer and a
# reload leave nginx and the channel working.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use IO::Select;
use IO::Socket::INET;
use MIME::Base64 qw(decode_base64);
use Time::HiRes qw(time sleep);
use MOM::Test;

my $t = MOM::Test->new(workers => 2, pbkdf2_iterations => 20000,
                       location_extra => 'mom_read_timeout 2s;');
our $TODO = $t->todo;
$t->start;

my $JSON = MOM::Test::JSON();

# Sends every request on a connection of its own, all before reading any
# answer, so that nginx has many of them in flight at once; answers()
# reads them, in request order ({status, type, json}; status 0: none).
sub send_all {
    my (@requests) = @_;
    my @socks;
    local $SIG{PIPE} = 'IGNORE';
    for my $r (@requests) {
        my ($method, $path, $body, $token) = @$r;
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                      PeerPort => $t->port, Proto => 'tcp')
            or die "connect: $!";
        my $content = defined $body ? $JSON->encode($body) : '';
        print $s "$method $path HTTP/1.1\r\nHost: localhost\r\n"
               . "Connection: close\r\n"
               . (defined $token ? "Authorization: Bearer $token\r\n" : '')
               . (defined $body ? "Content-Type: application/json\r\n"
                                  . 'Content-Length: ' . length($content)
                                  . "\r\n" : '')
               . "\r\n$content";
        push @socks, $s;
    }
    return \@socks;
}

sub answers {
    my ($socks) = @_;
    my %index = map { fileno($socks->[$_]) => $_ } 0 .. $#$socks;
    my @bufs = ('') x @$socks;
    my $sel = IO::Select->new(@$socks);
    my $deadline = time + 30;
    while ($sel->count && time < $deadline) {
        for my $s ($sel->can_read(0.5)) {
            my $k = $index{fileno $s};
            next if sysread($s, $bufs[$k], 65536, length $bufs[$k]);
            $sel->remove($s);
        }
    }
    close $_ for @$socks;
    my @answers;
    for my $buf (@bufs) {
        my ($head, $body) = split /\r\n\r\n/, $buf, 2;
        my %ans = (status => 0, type => '');
        if (defined $head && $head =~ m{^HTTP/1\.1 (\d+)}) {
            $ans{status} = $1;
            $ans{type} = $1 if $head =~ /^content-type: *([^\r]*)/mi;
            $ans{json} = eval { $JSON->decode($body) };
        }
        push @answers, \%ans;
    }
    return @answers;
}

sub concurrent { answers(send_all(@_)) }

my %token = map { $_ => $t->user_token($_) } qw(alice bob);
ok($token{alice} && $token{bob}, 'two users logged in');
for my $topic (qw(t1 t2 t3 t4)) {
    is($t->post('/messages/topics', {name => $topic},
                token => $token{alice})->{status}, 200, "topic $topic");
}
is($t->post('/messages/queues', {name => 'q'},
            token => $token{alice})->{status}, 200, 'queue q');

# --- every client gets its own answer ----------------------------------------

{
    my (@requests, @what);
    for my $i (1 .. 240) {
        my $who = $i % 2 ? 'alice' : 'bob';
        if ($i % 20 == 0) {
            # slow (PBKDF2), some refused: they must not hold up the others
            my $pw = $i % 40 ? $t->password_for($who) : 'wrong';
            push @requests, ['POST', '/auth/login',
                             {username => $who, password => $pw}];
            push @what, ['login', $who, $pw ne 'wrong'];
        } elsif ($i % 7 == 0) {
            push @requests, ['POST', '/messages/messages/queue/q',
                             {content => "q-$i"}, $token{$who}];
            push @what, ['send', "q-$i"];
        } elsif ($i % 11 == 0) {
            push @requests, ['GET', '/messages/topics'];
            push @what, ['topics'];
        } else {
            my $topic = 't' . (1 + $i % 4);
            push @requests, ['POST', "/messages/messages/topic/$topic",
                             {content => {n => $i, who => $who}},
                             $token{$who}];
            push @what, ['publish', $topic, $i, $who];
        }
    }
    my @answers = concurrent(@requests);
    my (@bad, %offsets, %sent);
    for my $k (0 .. $#answers) {
        my ($ans, $w) = ($answers[$k], $what[$k]);
        my $j = $ans->{json} // {};
        if ($w->[0] eq 'login') {
            my $want = $w->[2] ? 200 : 401;
            push @bad, "login $k: $ans->{status}" unless $ans->{status} == $want;
            if ($w->[2]) {
                my ($payload) = ($j->{token} // '') =~ /^[^.]+\.([^.]+)\./;
                my $claims = eval {
                    $payload =~ tr/-_/+\//;
                    $JSON->decode(decode_base64($payload));
                } if defined $payload;
                push @bad, "login $k: token not for $w->[1]"
                    unless $claims && ($claims->{sub} // '') eq $w->[1];
            }
        } elsif ($w->[0] eq 'send') {
            push @bad, "send $k: $ans->{status}"
                unless $ans->{status} == 200 && ($j->{message} // '') eq
                                              'Message sent';
            $sent{$w->[1]} = 1;
        } elsif ($w->[0] eq 'topics') {
            push @bad, "topics $k: $ans->{status}"
                unless $ans->{status} == 200
                    && join(',', @{$j->{topics} // []}) eq 't1,t2,t3,t4';
        } else {
            my (undef, $topic, $i, $who) = @$w;
            if ($ans->{status} == 200 && ($j->{message} // '') eq
                'Message published' && $j->{offset}) {
                push @bad, "publish $k: offset $j->{offset} twice"
                    if $offsets{$topic}{$j->{offset}};
                $offsets{$topic}{$j->{offset}} = [$i, $who];
            } else {
                push @bad, "publish $k: $ans->{status}";
            }
        }
    }
    ok(!@bad, '240 concurrent requests of five kinds: each got its own '
              . 'answer') or diag(join "\n", @bad[0 .. ($#bad < 9 ? $#bad
                                                                   : 9)]);
    like($answers[0]{type}, qr{^application/json}, 'answers are JSON');

    # The offset each client was told is where its own message is.
    my @wrong;
    for my $topic (sort keys %offsets) {
        my $h = $t->get("/messages/messages/topic/$topic?limit=1000");
        my %at = map { $_->{offset} => $_ } @{$h->{json}{messages} // []};
        for my $off (sort { $a <=> $b } keys %{$offsets{$topic}}) {
            my ($i, $who) = @{$offsets{$topic}{$off}};
            my $m = $at{$off};
            push @wrong, "$topic/$off"
                unless $m && ref $m->{content} eq 'HASH'
                    && $m->{content}{n} == $i && $m->{sender} eq $who;
        }
        is(scalar(keys %at), scalar(keys %{$offsets{$topic}}),
           "$topic: history holds exactly the acknowledged messages");
    }
    ok(!@wrong, 'every acknowledged offset holds that client\'s message')
        or diag("@wrong[0 .. ($#wrong < 9 ? $#wrong : 9)]");

    my %received;
    for (1 .. scalar keys %sent) {
        my $r = $t->get('/messages/messages/queue/q', token => $token{bob});
        $received{$r->{json}{message}{content}}++ if $r->{json}{message};
    }
    is_deeply(\%received, {map { $_ => 1 } keys %sent},
              'the queue holds each sent message once');
}

# --- clients that vanish before their answer ---------------------------------

{
    my $before = $t->post('/messages/messages/topic/t1', {content => 'x'},
                          token => $token{alice})->{json}{offset};
    local $SIG{PIPE} = 'IGNORE';
    for my $i (1 .. 300) {
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                      PeerPort => $t->port, Proto => 'tcp')
            or next;
        my $body = $JSON->encode({content => "gone-$i"});
        print $s "POST /messages/messages/topic/t1 HTTP/1.1\r\n"
               . "Host: localhost\r\nAuthorization: Bearer $token{alice}"
               . "\r\nContent-Type: application/json\r\nContent-Length: "
               . length($body) . "\r\n\r\n$body";
        close $s;
    }
    sleep 0.5;
    my $r = $t->post('/messages/messages/topic/t1', {content => 'after'},
                     token => $token{alice});
    is($r->{status}, 200, 'publish after 300 clients vanished mid-request');
    my $h = $t->get('/messages/messages/topic/t1?since=' . $before
                    . '&limit=1000');
    my @msgs = @{$h->{json}{messages} // []};
    my %seen;
    my @dups = grep { $seen{$_->{content}}++ } @msgs;
    ok(!@dups, 'no message stored twice');
    is($msgs[-1]{content}, 'after', 'the last answer is its own request\'s');
    is($msgs[-1]{offset}, $r->{json}{offset}, '... at the offset it was told');
}

# --- a reply bigger than the channel's buffer --------------------------------

{
    my $big = 'b' x 20000;
    my $ok = 0;
    for my $i (1 .. 120) {
        $ok++ if $t->post('/messages/messages/topic/t4',
                          {content => "$i:$big"},
                          token => $token{bob})->{status} == 200;
    }
    is($ok, 120, '120 messages of 20 kB published');
    my @answers = concurrent(
        ['GET', '/messages/messages/topic/t4?limit=1000'],
        ['GET', '/messages/topics'],
        ['GET', '/messages/messages/topic/t4?limit=1000']);
    my @pages = grep { $_->{status} == 200 && $_->{json}{messages} }
                     @answers[0, 2];
    is(scalar @pages, 2, 'two 2.4 MB history pages at once');
    my @big = grep { $_->{content} =~ /^\d+:b{20000}$/ }
              @{$pages[0]{json}{messages} // []};
    is(scalar @big, 120, '... whole');
    is(join(',', @{$answers[1]{json}{topics} // []}), 't1,t2,t3,t4',
       'the small answer between them is its own');
}

# --- momd stops answering: read timeout --------------------------------------

{
    $t->pause_momd;
    my $r = $t->get('/messages/topics', timeout => 10);
    is($r->{status}, 504, 'momd paused: 504 after mom_read_timeout');
    ok($r->{json} && $r->{json}{detail}, '... as JSON');
    $t->resume_momd;
    # the late reply to the timed-out request must not answer another one
    my @after = concurrent(
        map { ['POST', '/messages/messages/topic/t2', {content => "l$_"},
               $token{alice}] } 1 .. 20);
    my @pub = grep { $_->{status} == 200 && defined $_->{json}{offset} }
              @after;
    is(scalar @pub, 20, 'after resuming: 20 publishes answered as publishes');
}

# --- clients that give up while momd is stalled: nothing is taken ------------

{
    for my $i (1 .. 3) {
        is($t->post('/messages/messages/queue/q', {content => "keep-$i"},
                    token => $token{alice})->{status}, 200, "sent keep-$i");
    }
    $t->pause_momd;
    # two clients give up before nginx's timeout (their requests are
    # cancelled when nginx sees them close), one receive times out in
    # nginx (504: cancelled by the deadline)
    my $socks = send_all(map { ['GET', '/messages/messages/queue/q', undef,
                                $token{bob}] } 1 .. 2);
    sleep 0.5;
    close $_ for @$socks;
    my $r = $t->get('/messages/messages/queue/q', token => $token{bob},
                    timeout => 10);
    is($r->{status}, 504, 'receive while momd is stalled: 504');
    $t->resume_momd;
    sleep 0.5;
    my @got;
    for (1 .. 4) {
        my $m = $t->get('/messages/messages/queue/q',
                        token => $token{bob})->{json}{message};
        push @got, $m ? $m->{content} : 'none';
    }
    is("@got", 'keep-1 keep-2 keep-3 none',
       'receives cancelled while momd was stalled took nothing');
}

# --- momd dies with requests in flight ---------------------------------------

{
    $t->pause_momd;
    my $socks = send_all(map { ['GET', '/messages/topics'] } 1 .. 30);
    sleep 0.5;
    $t->kill_momd;
    my @answers = answers($socks);
    my @bad = grep { $_->{status} != 502 || !$_->{json} } @answers;
    ok(!@bad, '30 requests in flight when momd died: each a JSON 502')
        or diag(join ',', map { $_->{status} } @bad);
    ok($t->start_momd, 'momd started again');
    my @back = concurrent(map { ['GET', '/messages/topics'] } 1 .. 30);
    is(scalar(grep { $_->{status} == 200 } @back), 30,
       'then every request succeeds, nginx untouched');
}

# --- reload: idle channels of old workers do not keep them ---------------------

{
    my $master = $t->nginx_pid;
    my @old = MOM::Test::child_pids($master);
    kill 'HUP', $master;
    my $deadline = time + 5;
    sleep 0.05 while time < $deadline && grep { kill 0, $_ } @old;
    ok(!(grep { MOM::Test::_alive($_) } @old), 'old workers exited at once');
    is($t->get('/messages/topics')->{status}, 200, 'new workers answer');
}

$t->check_logs;
done_testing;
