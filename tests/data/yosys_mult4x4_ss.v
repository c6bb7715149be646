// 4x4 signed multiplier; tests/data/yosys_mult4x4_ss.json is
//   scripts/synth_netlist.sh tests/data/yosys_mult4x4_ss.v mult4x4_ss tests/data/yosys_mult4x4_ss.json
module mult4x4_ss (input signed [3:0] x, input signed [3:0] w, output signed [7:0] p);
  assign p = x * w;
endmodule
