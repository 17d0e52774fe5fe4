use strict;
use warnings;
use Test::More tests => 3;

use Debflow::Greeting 'greeting';

is(greeting('Debian'), 'Hello, Debian!', 'greets by name');
is(greeting(), 'Hello, world!', 'greets the world without a name');
is(greeting(''), 'Hello, world!', 'an empty name is no name');
