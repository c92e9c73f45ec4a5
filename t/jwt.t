#!/usr/bin/perl

# Tokens on an HS256 deployment: in the Authorization header and in
# ?token=; every way a token can be bad gets 401 JSON: expired, no exp,
# alg none, another algorithm (HS512 with the right secret, RS256), bad
# signature, tampered payload, garbage, no sub. Tokens crafted here with
# the deployment's own secret must work, so the 401s are not accidents.
# Last, a deployment with a 2 s lifetime: its tokens expire.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use MIME::Base64 qw(encode_base64url decode_base64url);
use Time::HiRes qw(time sleep);
use MOM::Test;
use MOM::Test::JWT qw(make_jwt jwt_parts);

my $t = MOM::Test->new(jwt_alg => 'HS256');
our $TODO = $t->todo;
$t->start;

my $login = $t->user_token('alice');
ok($login, 'logged in');
my ($h) = jwt_parts($login // '');
is($h->{alg}, 'HS256', 'login token is HS256');

my $now = int time;
my %good = (sub => 'alice', iat => $now, exp => $now + 300);

# status of the protected GET /auth/users with this token (header or query)
sub with_header {
    my ($tok) = @_;
    return $t->get('/auth/users', headers => {Authorization => "Bearer $tok"});
}

sub with_query {
    my ($tok) = @_;
    return $t->get('/auth/users?token=' . $tok);
}

sub rejected {
    my ($tok, $name, $detail) = @_;
    for my $how ([header => \&with_header], [query => \&with_query]) {
        my $r = $how->[1]->($tok);
        is($r->{status}, 401, "$name ($how->[0]): 401");
        like($r->{headers}{'content-type'} // '', qr{^application/json},
             "$name ($how->[0]): JSON");
        if (defined $detail) {
            is($r->{json} && $r->{json}{detail}, $detail,
               "$name ($how->[0]): detail");
        } else {
            ok($r->{json} && $r->{json}{detail},
               "$name ($how->[0]): has detail");
        }
    }
}

# --- good tokens ---------------------------------------------------------

my $r = with_header($login // '');
is($r->{status}, 200, 'login token in the header');
$r = with_query($login // '');
is($r->{status}, 200, 'login token in ?token=');
$r = $t->post("/messages/topics?token=" . ($login // ''), {name => 'q1'});
is($r->{status}, 200, '?token= on a POST');

my $crafted = make_jwt('HS256', $t->jwt_secret, \%good);
is(with_header($crafted)->{status}, 200, 'crafted HS256 token accepted');
is(with_query($crafted)->{status}, 200, 'crafted token in ?token=');

# --- missing -------------------------------------------------------------

$r = $t->get('/auth/users');
is($r->{status}, 401, 'no token: 401');
is($r->{json} && $r->{json}{detail}, 'Not authenticated', 'no token detail');
for my $hv ('Bearer', 'Bearer ', 'Basic YWxpY2U6eA==', 'Token abc', '') {
    $r = $t->get('/auth/users', headers => {Authorization => $hv});
    is($r->{status}, 401, "Authorization: '$hv' -> 401");
}
$r = $t->get('/auth/users?token=');
is($r->{status}, 401, 'empty ?token= -> 401');

# --- bad tokens ----------------------------------------------------------

rejected(make_jwt('HS256', $t->jwt_secret,
                  {%good, iat => $now - 600, exp => $now - 10}),
         'expired', 'Token expired');
rejected(make_jwt('HS256', $t->jwt_secret,
                  {%good, exp => $now - 1}), 'expired by 1 s');
my %noexp = %good;
delete $noexp{exp};
rejected(make_jwt('HS256', $t->jwt_secret, \%noexp), 'no exp');
rejected(make_jwt('HS256', $t->jwt_secret, {%good, exp => "$good{exp}"}),
         'exp as a string');
rejected(make_jwt('HS256', $t->jwt_secret, {%good, exp => undef}),
         'exp null');

my %nosub = %good;
delete $nosub{sub};
rejected(make_jwt('HS256', $t->jwt_secret, \%nosub), 'no sub');
rejected(make_jwt('HS256', $t->jwt_secret, {%good, sub => ''}), 'empty sub');
rejected(make_jwt('HS256', $t->jwt_secret, {%good, sub => 42}),
         'numeric sub');

rejected(make_jwt('none', undef, \%good), 'alg none');
rejected(make_jwt('none', undef, \%good, {alg => 'None'}), 'alg None');
rejected(make_jwt('none', undef, \%good, {alg => 'HS256'}),
         'alg HS256, no signature');
rejected(make_jwt('HS512', $t->jwt_secret, \%good),
         'HS512 with the right secret');
rejected(make_jwt('HS384', $t->jwt_secret, \%good),
         'HS384 with the right secret');
rejected(make_jwt('HS256', $t->jwt_secret, \%good, {alg => 'HS512'}),
         'HS256 signature, header says HS512');

my $other = MOM::Test->new(jwt_alg => 'RS256');   # only for its keys
rejected(make_jwt('RS256', $other->jwt_private_key, \%good),
         'RS256 token on an HS256 deployment');

rejected(make_jwt('HS256', 'not-the-secret', \%good), 'bad signature');
rejected(make_jwt('HS256', $t->jwt_secret . "\n", \%good),
         'secret with its newline (file contents) is not the secret');

my ($hb, $pb, $sb) = split /\./, $crafted;
my $evil = encode_base64url(
    MOM::Test::JSON()->encode({%good, sub => 'bob'}));
rejected("$hb.$evil.$sb", 'tampered payload (sub changed)');
my $evil_exp = encode_base64url(
    MOM::Test::JSON()->encode({%good, exp => $now + 99999}));
rejected("$hb.$evil_exp.$sb", 'tampered payload (exp extended)');
my $sig = decode_base64url($sb);
substr($sig, 0, 1) = chr(ord(substr $sig, 0, 1) ^ 1);
rejected("$hb.$pb." . encode_base64url($sig), 'flipped signature bit');
rejected("$hb.$pb.", 'signature removed');
rejected("$hb.$pb", 'two parts');

for my $g ('garbage', 'a.b.c', '...', "$hb.$pb.$sb.x", 'e30.e30.e30',
           'x' x 5000) {
    rejected($g, 'garbage ' . substr($g, 0, 20));
}

# A bad token is rejected on every protected route, not just one.
my $bad = make_jwt('HS256', 'wrong', \%good);
$r = $t->post('/messages/topics', {name => 'x'}, token => $bad);
is($r->{status}, 401, 'create topic with a bad token');
$r = $t->post('/messages/messages/topic/q1', {content => 1}, token => $bad);
is($r->{status}, 401, 'publish with a bad token');
$r = $t->del('/messages/topics/q1', token => $bad);
is($r->{status}, 401, 'delete with a bad token');

$t->check_logs;

# --- token lifetime ------------------------------------------------------

# One worker: the second request hits the worker that cached the token as
# verified; the cache must still check exp.
my $short = MOM::Test->new(jwt_alg => 'HS256', jwt_lifetime => '2s',
                           workers => 1);
$short->start;
my $tok = $short->user_token('carol');
$r = $short->post('/auth/login', {username => 'carol',
                                  password => $short->password_for('carol')});
is($r->{json} && $r->{json}{expires_in}, 2, 'expires_in follows the lifetime');
is($short->get('/auth/users', token => $tok)->{status}, 200,
   'short-lived token works at first');
sleep 3.2;
$r = $short->get('/auth/users', token => $tok);
is($r->{status}, 401, 'and is rejected once expired');
is($r->{json} && $r->{json}{detail}, 'Token expired', 'expired detail');
$short->check_logs;

done_testing;
