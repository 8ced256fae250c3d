// The lab's stack as a subscriber: the npm `nats` client (v1, what the lab's sim.js/rep.js use) with
// JSON.parse + parseFloat per message, like the lab's rep.js. Used by benchmarks/throughput.py.
//   node benchmarks/node_sub.js URL SUBJECT N
// prints "ready" once subscribed, then one JSON line when the N-th message is handled:
// {"done": <unix seconds>, "cpu": <CPU seconds used since ready>}
var path = require('path');
var nats = require(path.join(__dirname, '..', 'tests', 'node', 'node_modules', 'nats'));
var url = process.argv[2], subject = process.argv[3], n = parseInt(process.argv[4]);
var nc = nats.connect({servers: [url]});
var seen = 0, sum = 0, cpu0 = null;
nc.on('connect', function () {
  nc.subscribe(subject, function (msg) {
    var reading = JSON.parse(msg);
    sum += parseFloat(reading.level);
    if (++seen === n) {
      var used = process.cpuUsage(cpu0);
      var done = (performance.timeOrigin + performance.now()) / 1000;
      console.log(JSON.stringify({done: done, cpu: (used.user + used.system) / 1e6, sum: sum}));
      nc.close();
      process.exit(0);
    }
  });
  nc.flush(function () { cpu0 = process.cpuUsage(); console.log('ready'); });
});
