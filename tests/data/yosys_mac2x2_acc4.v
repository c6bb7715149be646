// 2x2 signed MAC into a 4-bit accumulator register with synchronous clear, kept hierarchical (-H) so the
// gates carry their instance (u_mult, u_acc); tests/data/yosys_mac2x2_acc4.json is
//   scripts/synth_netlist.sh -H tests/data/yosys_mac2x2_acc4.v mac2x2_acc4 tests/data/yosys_mac2x2_acc4.json
module mult2x2 (input signed [1:0] x, input signed [1:0] w, output signed [3:0] p);
  assign p = x * w;
endmodule

module acc4 (input clk, input clear, input [3:0] t, output reg [3:0] acc);
  always @(posedge clk)
    if (clear) acc <= 4'd0;
    else acc <= acc + t;
endmodule

module mac2x2_acc4 (input clk, input clear, input signed [1:0] x, input signed [1:0] w, output [3:0] acc);
  wire signed [3:0] p;
  mult2x2 u_mult (.x(x), .w(w), .p(p));
  acc4 u_acc (.clk(clk), .clear(clear), .t(p), .acc(acc));
endmodule
